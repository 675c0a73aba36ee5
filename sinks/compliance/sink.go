package compliance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"go.uber.org/zap"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/deadletter"
	"github.com/walhook/walhook/internal/kafkaconn"
)

// Sink is the compliance sink. Build it with New, run it with Run once.
type Sink struct {
	// revoked lists the partitions the group took away since the loop last looked (noteRevoked).
	revokedMu sync.Mutex
	revoked   []topicPartition // guarded by revokedMu
	cfg       *config.Config
	log       *zap.Logger
	promReg   prometheus.Registerer
	reg       avro.Registry // resolves snapshot values; nil: from the config at Run
	srClient  *sr.Client    // registers compliance schemas; nil: from the config, or single-object
	pgURL     string
	maxPoll   int
	extraOpts []kgo.Opt

	roots    []*rootSink
	byTopic  map[string]*rootSink // snapshot topic → root
	connOpts []kgo.Opt
	groupID  string
	// transactionalID is the same for every session of this process (kafkaconn.RunSessions).
	transactionalID string
	metrics         *metrics
	poisonTopic     string            // where undecodable or refused snapshot records are copied
	retry           *deadletter.Retry // owned by the loop goroutine
}

// rootSink is one root: its snapshot topic and its two compliance topics.
type rootSink struct {
	root          *config.Root
	snapshotTopic string
	log, latest   *topicSink
}

// topicSink is one compliance topic of one root with its current writer schema. Only Run's
// goroutine touches it.
type topicSink struct {
	name       string
	keepTenant bool
	schema     *rootSchema
	prefix     []byte
}

// Option configures New.
type Option func(*Sink)

// WithLogger sets the logger. Default: zap.NewNop().
func WithLogger(l *zap.Logger) Option { return func(s *Sink) { s.log = l } }

// WithRegisterer registers the sink's metrics on r. Default: none are registered.
func WithRegisterer(r prometheus.Registerer) Option { return func(s *Sink) { s.promReg = r } }

// WithRegistry sets the registry that resolves the snapshot records' writer schemas (the one the
// bubble-up stage frames with). Without a schema registry client it also frames the compliance
// records. Default: a Confluent registry at schema_registry.url, else the schema topic
// kafka.topic_prefix + "schemas" with single-object encoding.
func WithRegistry(r avro.Registry) Option { return func(s *Sink) { s.reg = r } }

// WithSchemaRegistry sets the Confluent-compatible registry client compliance schemas are
// registered with (subject "<topic>-value", compatibility BACKWARD). Default: a client for
// schema_registry.url when set; none otherwise (single-object encoding).
func WithSchemaRegistry(c *sr.Client) Option { return func(s *Sink) { s.srClient = c } }

// WithPostgres sets the PostgreSQL URL the column types are read from. Default: postgres.url.
func WithPostgres(url string) Option { return func(s *Sink) { s.pgURL = url } }

// WithMaxPollRecords bounds the snapshot records consumed in one Kafka transaction. Default 1000.
func WithMaxPollRecords(n int) Option { return func(s *Sink) { s.maxPoll = n } }

// WithKafkaOpts appends franz-go options to every client the sink makes (a Dialer for fault
// injection, a logger). Default none.
func WithKafkaOpts(opts ...kgo.Opt) Option {
	return func(s *Sink) { s.extraOpts = append(s.extraOpts, opts...) }
}

// New checks what the sink needs from cfg and prepares it. It connects to nothing.
func New(cfg *config.Config, opts ...Option) (*Sink, error) {
	cfg.Compliance.SetDefaults(cfg.Kafka)
	if err := cfg.ValidateCompliance(); err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg, log: zap.NewNop(), pgURL: cfg.Postgres.URL, maxPoll: 1000, byTopic: map[string]*rootSink{}}
	for _, o := range opts {
		o(s)
	}
	if s.pgURL == "" {
		return nil, errors.New("compliance: no PostgreSQL URL to read column types from: set postgres.url or WALHOOK_PG_URL")
	}
	c := &cfg.Compliance
	for _, r := range c.SelectRoots(&cfg.Model) {
		rs := &rootSink{
			root: r, snapshotTopic: cfg.Kafka.SnapshotTopic(*r),
			log:    &topicSink{name: c.Log.Topic(cfg.Kafka, *r), keepTenant: len(c.Log.KeepColumns) > 0},
			latest: &topicSink{name: c.Latest.Topic(cfg.Kafka, *r), keepTenant: len(c.Latest.KeepColumns) > 0},
		}
		s.roots = append(s.roots, rs)
		s.byTopic[rs.snapshotTopic] = rs
	}
	if len(s.roots) == 0 {
		return nil, errors.New("compliance: no roots to write: add model.roots, or fix compliance.roots")
	}
	var err error
	if s.connOpts, err = kafkaconn.Opts(cfg.Kafka); err != nil {
		return nil, fmt.Errorf("compliance: %w", err)
	}
	s.connOpts = append(s.connOpts, s.extraOpts...)
	s.groupID = cfg.ComplianceGroup()
	// One transactional id for the process's whole life, so a replacement session fences its
	// predecessor's transaction (kafkaconn.RunSessions).
	s.transactionalID = kafkaconn.TransactionalID(cfg.Kafka, s.groupID, randomSuffix)
	if s.metrics, err = newMetrics(s.promReg); err != nil {
		return nil, err
	}
	s.poisonTopic = cfg.PoisonTopic(config.StageCompliance)
	s.retry = &deadletter.Retry{Stage: config.StageCompliance, OnPoison: cfg.Compliance.OnPoison, PoisonTopic: s.poisonTopic, Log: s.log}
	return s, nil
}

// GroupID is the sink's Kafka consumer group.
func (s *Sink) GroupID() string { return s.groupID }

// Topics returns the log and latest topic of each root, in model order.
func (s *Sink) Topics() (log, latest []string) {
	for _, r := range s.roots {
		log, latest = append(log, r.log.name), append(latest, r.latest.name)
	}
	return log, latest
}

// Run creates the compliance topics when missing, derives and registers each root's schema, then
// consumes the snapshot topics until ctx ends (returning nil) or a permanent error. It returns
// after every goroutine it started has stopped: an open transaction is aborted, the group is
// left, the clients are closed.
func (s *Sink) Run(ctx context.Context) error {
	admin, err := kgo.NewClient(s.connOpts...)
	if err != nil {
		return fmt.Errorf("compliance: kafka client: %w", err)
	}
	defer admin.Close()
	if err := kafkaconn.Ping(ctx, admin, s.cfg.Kafka.Brokers); err != nil {
		return fmt.Errorf("compliance: %w", err)
	}
	if err := s.ensureTopics(ctx, admin); err != nil {
		return err
	}
	fr, err := s.registries(admin)
	if err != nil {
		return err
	}
	cat := catalog{url: s.pgURL}
	for _, rs := range s.roots {
		if err := s.loadSchemas(ctx, cat, fr, rs); err != nil {
			return err
		}
	}
	return kafkaconn.RunSessions(ctx, s.log, func(error) { s.metrics.sessionRestarts.Inc() },
		func(ctx context.Context) error { return s.loop(ctx, cat, fr) })
}

// registries fills s.reg and returns the framer of the compliance records.
func (s *Sink) registries(admin *kgo.Client) (framer, error) {
	onNew := func(topic string) { s.metrics.registrations.WithLabelValues(topic).Inc() }
	if s.srClient == nil {
		c, err := kafkaconn.SchemaRegistryClient(s.cfg.SchemaRegistry)
		if err != nil {
			return nil, fmt.Errorf("compliance: %w", err)
		}
		s.srClient = c
	}
	if s.reg == nil {
		if s.srClient != nil {
			s.reg = avro.NewConfluentRegistry(s.srClient)
		} else {
			s.reg = avro.NewTopicRegistry(admin, kafkaconn.SchemaTopic(s.cfg.Kafka))
		}
	}
	if s.srClient != nil {
		return &confluentFramer{client: s.srClient, onNew: onNew, prefixes: map[string][]byte{}}, nil
	}
	return &registryFramer{reg: s.reg, onNew: onNew, last: map[string]*avro.Schema{}}, nil
}

// schemaTopic holds the Avro schemas when no schema registry is configured; the other stages
// use the same one.

// tables lists every table a root's schema is derived from.
func tables(r *config.Root) []string {
	out := []string{r.Table}
	var walk func(subs []config.Subordinate)
	walk = func(subs []config.Subordinate) {
		for i := range subs {
			out = append(out, subs[i].Table)
			walk(subs[i].Subordinates)
		}
	}
	walk(r.Subordinates)
	for _, ref := range r.References {
		out = append(out, ref.Table)
	}
	return out
}

// loadSchemas reads the catalog, derives both topics' schemas and registers them. It reports
// whether either schema changed.
func (s *Sink) loadSchemas(ctx context.Context, cat catalog, fr framer, rs *rootSink) error {
	cols, err := cat.columns(ctx, tables(rs.root))
	if err != nil {
		return fmt.Errorf("compliance: root %s: %w", rs.root.Table, err)
	}
	for _, t := range []*topicSink{rs.log, rs.latest} {
		sch, err := compile(rs.root, cols, t.keepTenant)
		if err != nil {
			return err
		}
		if t.schema != nil && t.schema.schema.Fingerprint == sch.schema.Fingerprint {
			continue
		}
		p, err := fr.prefix(ctx, t.name, sch.schema)
		if err != nil {
			return fmt.Errorf("compliance: root %s topic %s: %w", rs.root.Table, t.name, err)
		}
		if t.schema != nil {
			s.log.Info("compliance schema changed", zap.String("topic", t.name), zap.String("root", rs.root.Table))
		}
		t.schema, t.prefix = sch, p
	}
	return nil
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
