package api

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/catalog"
	"github.com/walhook/walhook/internal/kafkaconn"
	"github.com/walhook/walhook/internal/status"
	"github.com/walhook/walhook/sinks/webhook"
)

// OpenAPI is the API's OpenAPI 3.1 document, served at /openapi.json. A test fails when a
// route and the document disagree.
//
//go:embed openapi.json
var OpenAPI []byte

//go:embed console
var consoleFS embed.FS

// Server is `walhook api`. Build it with New, serve it with Serve on a listener of api.listen
// (cmd/walhook binds it first, so walhook dev answers as soon as it says it is ready), Close it
// after.
type Server struct {
	cfg     *config.Config
	log     *zap.Logger
	version string
	admin   *webhook.Admin
	keys    *Keys
	kafka   *kgo.Client
	reg     avro.Registry
	dlog    *deliveryLog
	limit   *limiter
	mux     *http.ServeMux
	routes  []Route
	now     func() time.Time

	statusMu   sync.Mutex
	statusAt   time.Time      // guarded by statusMu
	statusLast *status.Report // guarded by statusMu

	catalogMu   sync.Mutex
	catalogAt   time.Time           // guarded by catalogMu
	catalogLast []catalog.EventType // guarded by catalogMu
	tenantsMu   sync.Mutex
	tenants     map[string]string // guarded by tenantsMu: subscription uuid → tenant
}

// Route is one operation of the API: a method and a ServeMux pattern.
type Route struct {
	Method, Pattern string
	// Operator routes refuse tenant tokens.
	Operator bool
	// Public routes need no key (the document, the console's files).
	Public  bool
	handler func(w http.ResponseWriter, r *http.Request, p Principal) *Problem
}

// Option configures New.
type Option func(*Server)

// WithLogger sets the logger (default: none).
func WithLogger(l *zap.Logger) Option { return func(s *Server) { s.log = l } }

// WithVersion sets the version the AsyncAPI document carries.
func WithVersion(v string) Option { return func(s *Server) { s.version = v } }

// New connects to PostgreSQL and Kafka (creating the webhook sink's topics when missing, as
// the sink does) and builds the routes. cfg must be validated.
func New(ctx context.Context, cfg *config.Config, opts ...Option) (*Server, error) {
	c := *cfg
	c.API.SetDefaults()
	c.Deliver.SetDefaults()
	c.Compliance.SetDefaults(c.Kafka)
	s := &Server{cfg: &c, log: zap.NewNop(), version: "dev", now: time.Now, tenants: map[string]string{}}
	for _, o := range opts {
		o(s)
	}
	var err error
	if s.admin, err = webhook.OpenAdminPool(ctx, c.Postgres.URL, webhook.WithConfig(&c)); err != nil {
		return nil, err
	}
	if s.keys, err = OpenKeys(ctx, c.Postgres.URL); err != nil {
		s.admin.Close()
		return nil, err
	}
	if err := s.connectKafka(ctx); err != nil {
		s.Close()
		return nil, err
	}
	s.dlog = newDeliveryLog(c.API.LogSize, s.tenantOf)
	s.limit = newLimiter(c.API.RateLimit, c.API.RateBurst)
	s.buildRoutes()
	return s, nil
}

func (s *Server) connectKafka(ctx context.Context) error {
	opts, err := kafkaconn.Opts(s.cfg.Kafka)
	if err != nil {
		return err
	}
	if s.kafka, err = kgo.NewClient(opts...); err != nil {
		return fmt.Errorf("api: kafka client: %w", err)
	}
	if err := kafkaconn.EnsureTopics(ctx, kadm.NewClient(s.kafka), webhook.Topics(s.cfg)); err != nil {
		return err
	}
	s.reg, err = kafkaconn.AvroRegistry(s.cfg, s.kafka)
	return err
}

// Close releases the connections.
func (s *Server) Close() {
	if s.kafka != nil {
		s.kafka.Close()
	}
	if s.keys != nil {
		s.keys.Close()
	}
	if s.admin != nil {
		s.admin.Close()
	}
}

// Keys is the server's key store (walhook dev creates its operator key with it).
func (s *Server) Keys() *Keys { return s.keys }

// Routes lists the API's operations.
func (s *Server) Routes() []Route { return s.routes }

// Handler is the whole API, console included.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Serve serves on ln until ctx is done, and reads the delivery log meanwhile. It returns after
// both have stopped.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}
	var wg sync.WaitGroup
	var logErr error
	wg.Go(func() {
		if logErr = s.dlog.run(ctx, s.cfg.Kafka, s.log); logErr != nil {
			cancel()
		}
	})
	wg.Go(func() {
		<-ctx.Done()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
	})
	s.log.Info("serving the API and the console", zap.String("addr", ln.Addr().String()))
	err := srv.Serve(ln)
	cancel()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return errors.Join(err, logErr)
}

func (s *Server) add(method, pattern string, h func(http.ResponseWriter, *http.Request, Principal) *Problem, operator bool) {
	s.routes = append(s.routes, Route{Method: method, Pattern: pattern, Operator: operator, handler: h})
}

func (s *Server) buildRoutes() {
	s.mux = http.NewServeMux()
	s.routes = append(s.routes,
		Route{Method: "GET", Pattern: "/openapi.json", Public: true, handler: s.openAPI},
		Route{Method: "GET", Pattern: "/{$}", Public: true, handler: s.consoleIndex},
		Route{Method: "GET", Pattern: "/console/{file...}", Public: true, handler: s.consoleFile},
	)
	s.add("GET", "/v1/me", s.me, false)
	s.add("GET", "/v1/status", s.status, true)
	s.add("GET", "/v1/overview", s.overview, false)
	s.add("GET", "/v1/event-types", s.eventTypes, false)
	s.add("GET", "/v1/event-types/{event}", s.eventType, false)
	s.add("GET", "/v1/asyncapi.json", s.asyncAPI, false)
	s.add("GET", "/v1/applications", s.listApps, false)
	s.add("POST", "/v1/applications", s.createApp, false)
	s.add("GET", "/v1/applications/{app}", s.getApp, false)
	s.add("GET", "/v1/subscriptions", s.listSubs, false)
	s.add("POST", "/v1/subscriptions", s.createSub, false)
	s.add("GET", "/v1/subscriptions/{uuid}", s.getSub, false)
	s.add("PATCH", "/v1/subscriptions/{uuid}", s.updateSub, false)
	s.add("DELETE", "/v1/subscriptions/{uuid}", s.disableSub, false)
	s.add("POST", "/v1/subscriptions/{uuid}/disable", s.disableSub, false)
	s.add("POST", "/v1/subscriptions/{uuid}/enable", s.enableSub, false)
	s.add("POST", "/v1/subscriptions/{uuid}/rotate-secret", s.rotateSecret, false)
	s.add("POST", "/v1/subscriptions/{uuid}/retrigger", s.retrigger, false)
	s.add("POST", "/v1/subscriptions/{uuid}/replay", s.replay, false)
	s.add("GET", "/v1/deliveries", s.listDeliveries, false)
	s.add("GET", "/v1/deliveries/{webhook_id}", s.getDelivery, false)
	s.add("GET", "/v1/stats/deliveries", s.deliveryStats, false)
	s.add("GET", "/v1/dead-letters", s.listDead, false)
	s.add("GET", "/v1/dead-letters/{id}", s.getDead, false)
	s.add("POST", "/v1/dead-letters/{id}/redrive", s.redriveOne, false)
	s.add("POST", "/v1/dead-letters/redrive", s.redriveMatching, false)
	s.add("GET", "/v1/api-keys", s.listKeys, true)
	s.add("POST", "/v1/api-keys", s.createKey, true)
	s.add("DELETE", "/v1/api-keys/{id}", s.revokeKey, true)
	for _, rt := range s.routes {
		s.mux.Handle(rt.Method+" "+rt.Pattern, s.wrap(rt))
	}
}

type principalKey struct{}

// wrap authenticates, rate-limits and authorizes a route, and turns its problem into a
// problem+json answer.
func (s *Server) wrap(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p Principal
		if !rt.Public {
			var prob *Problem
			if p, prob = s.authenticate(r); prob != nil {
				writeProblem(w, r, prob)
				return
			}
			if rt.Operator && !p.Operator() {
				writeProblem(w, r, forbidden("%s %s needs an operator key; this is a token of tenant %s", rt.Method, rt.Pattern, p.Tenant))
				return
			}
		}
		if prob := rt.handler(w, r, p); prob != nil {
			if prob.Status >= 500 {
				s.log.Warn("api request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.String("detail", prob.Detail))
			}
			writeProblem(w, r, prob)
		}
	})
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *Server) authenticate(r *http.Request) (Principal, *Problem) {
	now := s.now()
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || strings.TrimSpace(token) == "" {
		if ok, wait := s.limit.allow("addr:"+clientAddr(r), now); !ok {
			return Principal{}, rateLimited(wait)
		}
		p := problem(http.StatusUnauthorized, "unauthorized", "An API key is required",
			"send the key as Authorization: Bearer <key>; `walhook api key create` makes one (walhook dev prints one)")
		return Principal{}, p
	}
	p, err := s.keys.Authenticate(r.Context(), strings.TrimSpace(token))
	if errors.Is(err, errBadKey) {
		if ok, wait := s.limit.allow("addr:"+clientAddr(r), now); !ok {
			return Principal{}, rateLimited(wait)
		}
		return Principal{}, problem(http.StatusUnauthorized, "unauthorized", "The API key is not valid",
			"the key is unknown, revoked or expired; `walhook api key create` makes a new one")
	}
	if err != nil {
		return Principal{}, problem(http.StatusServiceUnavailable, "unavailable", "The key store cannot be read", "%v", err)
	}
	if ok, wait := s.limit.allow(fmt.Sprintf("key:%d", p.KeyID), now); !ok {
		return Principal{}, rateLimited(wait)
	}
	return p, nil
}

func rateLimited(wait int) *Problem {
	p := problem(http.StatusTooManyRequests, "rate-limited", "Too many requests",
		"this key made more requests than api.rate_limit allows; wait %d s (Retry-After) and try again", wait)
	p.RetryAfter = max(wait, 1)
	return p
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if _, pattern := s.mux.Handler(r); pattern == "" {
		s.noRoute(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// noRoute answers a request no route matches: 405 with Allow when the path has other methods,
// else 404, both as problems.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{"GET", "POST", "PATCH", "DELETE", "PUT"} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeProblem(w, r, problem(http.StatusMethodNotAllowed, "method-not-allowed", "Method not allowed",
			"%s is not allowed on %s; use %s (/openapi.json describes every operation)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
		return
	}
	writeProblem(w, r, notFound("no operation at %s %s; /openapi.json describes every operation", r.Method, r.URL.Path))
}

func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request, _ Principal) *Problem {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(OpenAPI)
	return nil
}

func (s *Server) consoleIndex(w http.ResponseWriter, r *http.Request, _ Principal) *Problem {
	return s.serveConsole(w, r, "index.html")
}

func (s *Server) consoleFile(w http.ResponseWriter, r *http.Request, _ Principal) *Problem {
	return s.serveConsole(w, r, r.PathValue("file"))
}

func (s *Server) serveConsole(w http.ResponseWriter, r *http.Request, name string) *Problem {
	sub, _ := fs.Sub(consoleFS, "console")
	data, err := fs.ReadFile(sub, name)
	if err != nil {
		return notFound("no console file %s", name)
	}
	ct := "application/octet-stream"
	switch {
	case strings.HasSuffix(name, ".html"):
		ct = "text/html; charset=utf-8"
	case strings.HasSuffix(name, ".js"):
		ct = "text/javascript; charset=utf-8"
	case strings.HasSuffix(name, ".css"):
		ct = "text/css; charset=utf-8"
	}
	h := w.Header()
	h.Set("Content-Type", ct)
	// Everything the console needs is served from here: nothing may load from elsewhere.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
	h.Set("Cache-Control", "no-cache")
	h.Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write(data)
	return nil
}

// RouteTable lists the routes a Server serves, without one (the OpenAPI agreement test).
func RouteTable() []Route {
	s := &Server{}
	s.buildRoutes()
	return s.routes
}
