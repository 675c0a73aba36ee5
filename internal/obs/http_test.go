package obs

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServerEndpoints(t *testing.T) {
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "walhook_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	health := NewHealth()
	health.NotReady("cdc", "waiting for slot")

	srv, err := Listen("127.0.0.1:0", reg, health, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	base := "http://" + srv.Addr()

	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for slot") {
		t.Fatalf("/readyz while not ready = %d %q", code, body)
	}
	health.Ready("cdc")
	code, body = get(t, base+"/readyz")
	var got struct{ Ready bool }
	if err := json.Unmarshal([]byte(body), &got); err != nil || code != 200 || !got.Ready {
		t.Fatalf("/readyz when ready = %d %q (%v)", code, body, err)
	}
	if code, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, "walhook_test_total 3") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics = %d, missing series:\n%.500s", code, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestListenTakenPort(t *testing.T) {
	first, err := Listen("127.0.0.1:0", NewRegistry(), NewHealth(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer first.ln.Close()
	_, err = Listen(first.Addr(), NewRegistry(), NewHealth(), zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "WALHOOK_HTTP_LISTEN") {
		t.Fatalf("second Listen on %s: err = %v, want one naming the fix", first.Addr(), err)
	}
}

func TestNewLoggerRejectsBadInput(t *testing.T) {
	if _, err := NewLogger("loud", "json"); err == nil || !strings.Contains(err.Error(), "debug, info, warn or error") {
		t.Fatalf("bad level: %v", err)
	}
	if _, err := NewLogger("info", "xml"); err == nil || !strings.Contains(err.Error(), "json or console") {
		t.Fatalf("bad format: %v", err)
	}
	if _, err := NewLogger("debug", "console"); err != nil {
		t.Fatal(err)
	}
}
