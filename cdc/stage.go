package cdc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/tracing"
)

// Stage is the CDC stage of one slot. Create it with New and run it with Run.
type Stage struct {
	cfg *config.Config
	log *zap.Logger
	reg prometheus.Registerer
	// refusedWait is how long Run waits before it returns a record refused for good
	// (produce.go backoffRefused); refusedBackoff, shorter in tests.
	refusedWait time.Duration
	registry    avro.Registry // nil: built in Run from cfg.SchemaRegistry
	metrics     *metrics
	onMarker    MarkerFunc
	tracer      trace.Tracer // nil: tracing disabled

	runMu   sync.Mutex
	running bool
}

// MarkerFunc receives the pg_logical_emit_message markers with a "walhook." prefix other than
// the heartbeat (a watermark-based snapshot reader uses them). It runs on the stream
// goroutine; an error stops the stage.
type MarkerFunc func(ctx context.Context, m Marker) error

// Marker is one logical decoding message read from the slot.
type Marker struct {
	Prefix        string
	Content       []byte // valid during the call only
	LSN           uint64
	Transactional bool
	// Xid and CommitLSN are set for a transactional marker.
	Xid       uint32
	CommitLSN uint64
}

// Option configures a Stage.
type Option func(*Stage)

// WithLogger sets the logger. Default: zap.NewNop().
func WithLogger(l *zap.Logger) Option { return func(s *Stage) { s.log = l } }

// WithRegisterer registers the stage's metrics on r. Default: a private registry (the metrics
// are kept but not exported); never the global default.
func WithRegisterer(r prometheus.Registerer) Option { return func(s *Stage) { s.reg = r } }

// WithRegistry sets how Avro records are framed. Default: the Confluent registry at
// cfg.SchemaRegistry.URL when set, else single-object encoding with the schemas kept in the
// compacted topic <prefix>schemas.
func WithRegistry(r avro.Registry) Option { return func(s *Stage) { s.registry = r } }

// WithMarkers sets the receiver of walhook.* markers. Default: markers are ignored.
func WithMarkers(f MarkerFunc) Option { return func(s *Stage) { s.onMarker = f } }

// WithTracerProvider traces every source transaction with a span ("cdc.txn") whose traceparent
// its change records and TxnEnds carry. Default (nil): no tracing, no header.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(s *Stage) { s.tracer = tracing.Tracer(tp) }
}

// New checks cfg for what the stage needs and returns a stage ready to Run. It connects to
// nothing.
func New(cfg *config.Config, opts ...Option) (*Stage, error) {
	if cfg == nil {
		return nil, errors.New("cdc: nil config")
	}
	s := &Stage{cfg: cfg, log: zap.NewNop(), reg: prometheus.NewRegistry(), refusedWait: refusedBackoff}
	for _, o := range opts {
		o(s)
	}
	var errs []error
	if cfg.Postgres.URL == "" {
		errs = append(errs, errors.New("cdc: postgres.url is empty: set it or WALHOOK_PG_URL"))
	}
	if cfg.Postgres.Slot == "" || cfg.Postgres.Publication == "" {
		errs = append(errs, errors.New("cdc: postgres.slot and postgres.publication must be set (config.Load fills the defaults)"))
	}
	if len(cfg.Model.Roots) == 0 {
		errs = append(errs, errors.New("cdc: the model has no roots: add model.roots to the config"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m, err := newMetrics(s.reg, cfg.Postgres.Slot)
	if err != nil {
		return nil, fmt.Errorf("cdc: register metrics: %w", err)
	}
	s.metrics = m
	return s, nil
}
