package devreceiver

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// syncBuffer lets the test read what the server goroutine writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func post(t *testing.T, url string, body []byte, secret string, tamper bool) int {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sig, err := wh.Sign("msg_1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	if tamper {
		body = append([]byte(nil), body...)
		body[2] = 'X'
	}
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("webhook-id", "msg_1")
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	req.Header.Set("walhook-event-type", "incident_instance_created")
	req.Header.Set("walhook-version", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestReceiverVerifiesAndPrints(t *testing.T) {
	var out syncBuffer
	r, err := Listen(&out)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	if err := r.Trust("/acme/created", secret); err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"id":134,"timeline":[]}`)
	if code := post(t, r.URL()+"/acme/created", body, secret, false); code != http.StatusNoContent {
		t.Fatalf("signed delivery answered %d, want 204; output:\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "incident_instance_created") || !strings.Contains(out.String(), `"id": 134`) {
		t.Fatalf("delivery not printed:\n%s", out.String())
	}
	if code := post(t, r.URL()+"/acme/created", body, secret, true); code != http.StatusUnauthorized {
		t.Fatalf("tampered body answered %d, want 401", code)
	}
	if code := post(t, r.URL()+"/other", body, secret, false); code != http.StatusNotFound {
		t.Fatalf("unknown path answered %d, want 404", code)
	}
	if !strings.Contains(out.String(), "signature does not verify") {
		t.Fatalf("refusal not printed:\n%s", out.String())
	}
}

// TestReceiverStopsWithAnUnusedConnection: a client that connected and sent nothing (an
// HTTP client warming a connection) must not make Ctrl-C of walhook dev fail.
func TestReceiverStopsWithAnUnusedConnection(t *testing.T) {
	r, err := Listen(&syncBuffer{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	c, err := net.Dial("tcp", strings.TrimPrefix(r.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Half a request: the server holds the connection as active, waiting for the rest.
	if _, err := c.Write([]byte("POST /x HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	// A full request on a second connection is answered only once the server serves: by then
	// it has accepted the first one too (one accept loop, in order).
	if resp, err := http.Post(r.URL()+"/unknown", "application/json", strings.NewReader("{}")); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v, want a clean stop", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}
