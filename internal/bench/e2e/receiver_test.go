package e2e

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// receiver is the subscribed endpoint: it verifies each delivery's signature, as a real receiver
// must, and records receipt time minus the commit time the payload carries. Deliveries of
// transactions committed outside the measured window [from, to) are counted but not recorded.
type receiver struct {
	ln  net.Listener
	srv *http.Server

	mu        sync.Mutex // guards everything below
	verifiers map[string]*standardwebhooks.Webhook
	from, to  int64 // measured window, Unix µs; to == 0 while open-ended
	lat       []time.Duration
	seen      map[string]bool // webhook-id of measured deliveries
	dups      int
	total     int
	bad       int
	lastErr   error
}

func startReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{ln: ln, verifiers: map[string]*standardwebhooks.Webhook{}, seen: map[string]bool{}, from: 1 << 62}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }() // stopped by close, which waits for handlers
	return r, nil
}

func (r *receiver) url() string { return "http://" + r.ln.Addr().String() }

func (r *receiver) close() { _ = r.srv.Close() }

func (r *receiver) trust(path, secret string) error {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.verifiers[path] = wh
	return nil
}

// reset forgets what the previous window recorded, before the next one opens.
func (r *receiver) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.from, r.to = 1<<62, 0
	r.lat, r.seen = nil, map[string]bool{}
	r.dups, r.bad, r.lastErr = 0, 0, nil
}

// window sets the commit-time window whose deliveries are recorded; to 0 leaves it open.
func (r *receiver) window(from, to int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.from, r.to = from, to
}

type payload struct {
	ResolutionNotes string `json:"resolution_notes"`
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	now := time.Now()
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.recordLocked(now, req, body); err != nil {
		r.bad++
		r.lastErr = err
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// recordLocked verifies and records one delivery; r.mu is held.
func (r *receiver) recordLocked(now time.Time, req *http.Request, body []byte) error {
	wh := r.verifiers[req.URL.Path]
	if wh == nil {
		return errors.New("no subscription delivers to " + req.URL.Path)
	}
	if err := wh.Verify(body, req.Header); err != nil {
		return err
	}
	r.total++
	var p payload
	if err := json.Unmarshal(body, &p); err != nil {
		return err
	}
	committed, err := strconv.ParseInt(p.ResolutionNotes, 10, 64)
	if err != nil || committed < r.from || (r.to != 0 && committed >= r.to) {
		return nil // a seed row, the probe, warm-up or drain: not measured
	}
	id := req.Header.Get("webhook-id")
	if r.seen[id] {
		r.dups++
		return nil
	}
	r.seen[id] = true
	r.lat = append(r.lat, now.Sub(time.UnixMicro(committed)))
	return nil
}

// stats is what the receiver saw of the measured window.
type stats struct {
	received, dups, total, bad int
	lastErr                    error
	p50, p90, p99, p999, max   time.Duration
}

func (r *receiver) stats() stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := stats{received: len(r.lat), dups: r.dups, total: r.total, bad: r.bad, lastErr: r.lastErr}
	lat := slices.Clone(r.lat)
	slices.Sort(lat)
	s.p50, s.p90, s.p99, s.p999 = quantile(lat, .50), quantile(lat, .90), quantile(lat, .99), quantile(lat, .999)
	if len(lat) > 0 {
		s.max = lat[len(lat)-1]
	}
	return s
}

func (r *receiver) measured() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.lat)
}

// totalSeen counts every verified delivery, measured or not.
func (r *receiver) totalSeen() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// quantile is the nearest-rank quantile of sorted.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
