// Package devreceiver is the webhook receiver built into `walhook dev`: it verifies every
// delivery's Standard Webhooks signature with the reference library (not walhook's own signer, so
// the demo proves interoperability) and prints the event type, version and payload.
package devreceiver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Receiver is a loopback HTTP server that accepts signed webhooks.
type Receiver struct {
	ln  net.Listener
	srv *http.Server
	out io.Writer

	mu        sync.Mutex // guards verifiers and the out writer
	verifiers map[string]*standardwebhooks.Webhook
}

// Listen binds a free loopback port. Deliveries are printed to out.
func Listen(out io.Writer) (*Receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("dev receiver: %w", err)
	}
	r := &Receiver{ln: ln, out: out, verifiers: map[string]*standardwebhooks.Webhook{}}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 5 * time.Second}
	return r, nil
}

// URL is the base URL; each subscription gets its own path under it so the receiver knows which
// secret to verify with.
func (r *Receiver) URL() string { return "http://" + r.ln.Addr().String() }

// Trust registers the signing secret of the subscription delivering to path.
func (r *Receiver) Trust(path, secret string) error {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return fmt.Errorf("dev receiver: secret for %s: %w", path, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.verifiers[path] = wh
	return nil
}

// Run serves until ctx is done.
func (r *Receiver) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- r.srv.Serve(r.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("dev receiver: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := r.srv.Shutdown(shutCtx)
	if errors.Is(err, context.DeadlineExceeded) {
		// A connection the sink opened but never used counts as active for 5 s; the demo is
		// stopping and nothing more will be delivered, so close whatever is left.
		err = r.srv.Close()
	}
	if serveErr := <-errc; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return err
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 8<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	wh := r.verifiers[req.URL.Path]
	if wh == nil {
		fmt.Fprintf(r.out, "✗ %s: no subscription delivers to this path\n", req.URL.Path)
		http.Error(w, "unknown subscription path", http.StatusNotFound)
		return
	}
	if err := wh.Verify(body, req.Header); err != nil {
		fmt.Fprintf(r.out, "✗ %s %s: signature does not verify: %v\n", req.Header.Get("webhook-id"), req.URL.Path, err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, body, "  ", "  ") != nil {
		pretty.Reset()
		pretty.Write(body)
	}
	fmt.Fprintf(r.out, "✓ webhook %s  version %s  id %s  (signature verified)\n  %s\n",
		req.Header.Get("walhook-event-type"), req.Header.Get("walhook-version"), req.Header.Get("webhook-id"), pretty.String())
	w.WriteHeader(http.StatusNoContent)
}
