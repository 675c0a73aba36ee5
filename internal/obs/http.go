package obs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// NewRegistry is a Prometheus registry with the Go runtime and process collectors, so every
// subcommand exposes memory, GC and file-descriptor figures next to its own.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Health tracks readiness: each stage registers a named check and flips it when it is ready (slot
// streaming, partitions restored, ...). /healthz answers while the process serves at all;
// /readyz only when every check is ready.
type Health struct {
	mu     sync.Mutex
	checks map[string]string // name → "" when ready, else why not
}

// NewHealth returns a Health with no checks (ready).
func NewHealth() *Health { return &Health{checks: map[string]string{}} }

// Set records a check's state; reason "" means ready.
func (h *Health) Set(name, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[name] = reason
}

// NotReady is Set with a reason, for readability at call sites.
func (h *Health) NotReady(name, reason string) { h.Set(name, reason) }

// Ready marks a check ready.
func (h *Health) Ready(name string) { h.Set(name, "") }

func (h *Health) snapshot() (ready bool, checks map[string]string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ready = true
	checks = make(map[string]string, len(h.checks))
	for k, v := range h.checks {
		if v != "" {
			ready = false
			checks[k] = v
		} else {
			checks[k] = "ready"
		}
	}
	return ready, checks
}

// Server is the operational HTTP endpoint.
type Server struct {
	srv *http.Server
	ln  net.Listener
	log *zap.Logger
}

// Listen binds addr and prepares /metrics, /healthz and /readyz. It binds before Serve so that a
// taken port fails at start-up, not later in a goroutine.
func Listen(addr string, reg *prometheus.Registry, health *Health, log *zap.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics/health endpoint on %s: %w (set http.listen or WALHOOK_HTTP_LISTEN to a free address)", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ready, checks := health.snapshot()
		w.Header().Set("Content-Type", "application/json")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ready": ready, "checks": checks})
	})
	return &Server{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		ln:  ln,
		log: log,
	}, nil
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Run serves until ctx is done, then shuts down within 5 seconds.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics/health endpoint: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(shutCtx)
	if serveErr := <-errc; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return err
}
