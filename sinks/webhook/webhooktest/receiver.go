// Package webhooktest is a webhook receiver for tests: a real HTTP server on 127.0.0.1:0 that
// records every request and answers 200, 500, 429, 410, slowly or never, on demand.
//
// It is for tests only and must not be imported by non-test code.
package webhooktest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Request is one received request.
type Request struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
	At     time.Time
}

// Response is how the receiver answers one request.
type Response struct {
	Status int               // default 200
	Header map[string]string // e.g. Retry-After
	Delay  time.Duration     // wait before answering
	Never  bool              // never answer: hold the request until the client gives up
	Body   string            // the answer's body
}

// Receiver records requests and answers with its responder.
type Receiver struct {
	srv *httptest.Server

	mu      sync.Mutex
	reqs    []Request                       // guarded by mu
	respond func(n int, r Request) Response // guarded by mu; n counts requests from 0
}

// Start starts a plain-HTTP receiver answering 200, closed by t.Cleanup.
func Start(t testing.TB) *Receiver {
	r := &Receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

// StartTLS starts an HTTPS receiver; Client().Transport's TLS config trusts it.
func StartTLS(t testing.TB) *Receiver {
	r := &Receiver{}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

// Close stops the server, ending requests held by Never.
func (r *Receiver) Close() {
	r.srv.CloseClientConnections()
	r.srv.Close()
}

// URL is the receiver's base URL.
func (r *Receiver) URL() string { return r.srv.URL }

// Server is the underlying test server (its Certificate for TLS clients).
func (r *Receiver) Server() *httptest.Server { return r.srv }

// Respond sets how following requests are answered.
func (r *Receiver) Respond(fn func(n int, req Request) Response) {
	r.mu.Lock()
	r.respond = fn
	r.mu.Unlock()
}

// Always answers every following request with resp.
func (r *Receiver) Always(resp Response) { r.Respond(func(int, Request) Response { return resp }) }

// Requests returns a copy of the requests received so far.
func (r *Receiver) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.reqs...)
}

// Count is the number of requests received.
func (r *Receiver) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

func (r *Receiver) serve(w http.ResponseWriter, hr *http.Request) {
	body, _ := io.ReadAll(hr.Body)
	req := Request{Method: hr.Method, Path: hr.URL.Path, Header: hr.Header.Clone(), Body: body, At: time.Now()}
	r.mu.Lock()
	n := len(r.reqs)
	r.reqs = append(r.reqs, req)
	fn := r.respond
	r.mu.Unlock()
	resp := Response{Status: http.StatusOK}
	if fn != nil {
		resp = fn(n, req)
	}
	if resp.Never {
		<-hr.Context().Done()
		return
	}
	if resp.Delay > 0 {
		select {
		case <-time.After(resp.Delay):
		case <-hr.Context().Done():
			return
		}
	}
	for k, v := range resp.Header {
		w.Header().Set(k, v)
	}
	if resp.Status == 0 {
		resp.Status = http.StatusOK
	}
	w.WriteHeader(resp.Status)
	_, _ = io.WriteString(w, resp.Body)
}
