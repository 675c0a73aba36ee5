package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/chunked"
	"github.com/walhook/walhook/internal/deadletter"
	"github.com/walhook/walhook/internal/kafkaconn"
)

// Stage is the bubble-up stage: a consumer group over the change topics that emits one versioned
// snapshot per root per source transaction. Create it with New and run it with Run.
type Stage struct {
	cfg             *config.Config
	log             *zap.Logger
	reg             avro.Registry
	promReg         prometheus.Registerer
	stateDir        string
	snapSchema      *avro.Schema
	roots           []*rootModel
	byTopic         map[string]*rootModel // change topic → root
	groupID         string
	transactionalID string // the same for every session of this process (kafkaconn.RunSessions)
	changelog       string
	connOpts        []kgo.Opt
	maxRecord       int // kafka.max_record_bytes: larger records are produced as chunks
	metrics         *metrics
	reemit          *stageReemit // nil when no reference re-emits (reemit.go)
	tracer          trace.Tracer // nil: tracing disabled (trace.go)
	layout          refLayout    // the referenced tables and what their versions store (refstore.go)
	// inexactTopic records snapshots whose references could not be shown as of their
	// transaction (inexact.go); inexactLog rate-limits their log line.
	inexactTopic string
	inexactLog   logLimiter
	poisonTopic  string            // where undecodable or refused input records are copied (poison.go)
	retry        *deadletter.Retry // owned by the loop goroutine

	// Set by Run before any worker starts; read-only afterwards.
	db    *pebble.DB
	admin *kgo.Client
	refs  *refTables

	dbForMetrics   atomic.Pointer[pebble.DB] // read by the state_bytes gauge from scrapes
	refsForMetrics atomic.Pointer[refTables] // read by the reference_versions gauge from scrapes

	// revoked collects partitions the group took away, from kgo's rebalance callbacks, for the loop
	// to stop their workers.
	revokedMu sync.Mutex
	revoked   []topicPartition // guarded by revokedMu
}

type topicPartition struct {
	topic     string
	partition int32
}

// Option configures New.
type Option func(*Stage)

// WithLogger sets the logger. Default: zap.NewNop().
func WithLogger(l *zap.Logger) Option { return func(s *Stage) { s.log = l } }

// WithRegisterer registers the stage's metrics on r. Default: none are registered.
func WithRegisterer(r prometheus.Registerer) Option { return func(s *Stage) { s.promReg = r } }

// WithRegistry sets the schema registry that frames and resolves Avro values. Required.
func WithRegistry(r avro.Registry) Option { return func(s *Stage) { s.reg = r } }

// WithStateDir sets the directory of the local state store, overriding bubbleup.state_dir.
// Default: a fresh directory under the OS temp dir, removed when Run returns.
func WithStateDir(dir string) Option { return func(s *Stage) { s.stateDir = dir } }

// New validates what the stage needs from cfg and prepares it. It connects to nothing.
func New(cfg *config.Config, opts ...Option) (*Stage, error) {
	cfg.BubbleUp.SetDefaults()
	s := &Stage{cfg: cfg, log: zap.NewNop(), stateDir: cfg.BubbleUp.StateDir, byTopic: map[string]*rootModel{}}
	for _, o := range opts {
		o(s)
	}
	if s.reg == nil {
		return nil, errors.New("pipeline: no schema registry: pass pipeline.WithRegistry (avro.ConfluentRegistry or the topic registry)")
	}
	if len(cfg.Model.Roots) == 0 {
		return nil, errors.New("pipeline: the model has no roots: add model.roots to the config")
	}
	var err error
	if s.roots, err = compileRoots(&cfg.Model, cfg.Kafka); err != nil {
		return nil, err
	}
	for _, rm := range s.roots {
		s.byTopic[rm.changeTopic] = rm
	}
	s.reemit = newStageReemit(s.roots)
	s.layout = newRefLayout(s.roots)
	s.inexactTopic = cfg.InexactReferenceTopic()
	s.poisonTopic = cfg.PoisonTopic(config.StageBubbleUp)
	s.retry = &deadletter.Retry{Stage: config.StageBubbleUp, OnPoison: cfg.BubbleUp.OnPoison, PoisonTopic: s.poisonTopic, Log: s.log}
	if s.snapSchema, err = avro.ParseSchema(avro.SnapshotSchema()); err != nil {
		return nil, fmt.Errorf("pipeline: snapshot schema: %w", err)
	}
	s.maxRecord = kafkaconn.RecordLimit(cfg.Kafka)
	if s.connOpts, err = kafkaconn.Opts(cfg.Kafka); err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	s.groupID = cfg.BubbleUpGroup()
	// One transactional id for the process's whole life: a session that replaces a failed one
	// (kafkaconn.RunSessions) fences its predecessor's transaction at once instead of leaving it
	// open until bubbleup.transaction_timeout, which would hold back every read_committed reader
	// of the partitions it wrote.
	s.transactionalID = kafkaconn.TransactionalID(cfg.Kafka, s.groupID, randomSuffix)
	s.changelog = s.groupID + ".changelog"
	s.metrics, err = newMetrics(s.promReg, func() float64 {
		if db := s.dbForMetrics.Load(); db != nil {
			return float64(db.Metrics().DiskSpaceUsage())
		}
		return 0
	}, func() float64 {
		if refs := s.refsForMetrics.Load(); refs != nil {
			return float64(refs.versionCount())
		}
		return 0
	})
	if err != nil {
		return nil, fmt.Errorf("pipeline: register metrics: %w", err)
	}
	return s, nil
}

// ChangelogTopic is the compacted topic backing the stage's state.
func (s *Stage) ChangelogTopic() string { return s.changelog }

// GroupID is the Kafka consumer group of the stage.
func (s *Stage) GroupID() string { return s.groupID }

// Run consumes until ctx ends or a permanent error, and returns after every goroutine it started
// has stopped. The order of shutdown: the transaction loop stops (an open transaction is
// aborted), the group is left, the partition workers and the reference reader stop, the state
// store closes.
func (s *Stage) Run(ctx context.Context) (err error) {
	admin, err := kgo.NewClient(s.connOpts...)
	if err != nil {
		return fmt.Errorf("pipeline: kafka client: %w", err)
	}
	defer admin.Close()
	s.admin = admin
	refParts, err := s.ensureTopics(ctx)
	if err != nil {
		return err
	}
	closeDB, err := s.openState()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeDB()) }()

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	var refErr error
	if s.refs, err = newRefTables(s.db, s.layout, refParts, s.cfg.BubbleUp.ReferenceHistory); err != nil {
		return err
	}
	s.refs.metrics = s.metrics
	s.refs.re = newRefChanges(s.db, s.layout, s.reemitTables())
	s.refsForMetrics.Store(s.refs)
	defer s.refsForMetrics.Store(nil)
	if len(refParts) > 0 {
		rr, err := s.newRefReader(refParts)
		if err != nil {
			return err
		}
		defer rr.cl.Close()
		h := &horizonTracker{s: s, refs: s.refs}
		s.refs.horizon = h.get
		wg.Add(2)
		go func() {
			defer wg.Done()
			h.run(runCtx)
		}()
		go func() {
			defer wg.Done()
			if refErr = rr.run(runCtx); refErr != nil {
				cancel(refErr)
			}
		}()
	}
	loopErr := kafkaconn.RunSessions(runCtx, s.log, func(error) { s.metrics.sessionRestarts.Inc() }, s.loop)
	cancel(nil)
	wg.Wait()
	return errors.Join(loopErr, refErr)
}

func (s *Stage) openState() (func() error, error) {
	dir, own := s.stateDir, false
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "walhook-bubbleup-*"); err != nil {
			return nil, fmt.Errorf("pipeline: state dir: %w", err)
		}
		own = true
	}
	// No write-ahead log: every assignment drops a partition's range and restores it from the
	// changelog (restore.go), so nothing written here is ever read after a restart, and a write
	// needs to reach only the memtable.
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{s.log.Sugar()}, DisableWAL: true})
	if err != nil {
		return nil, fmt.Errorf("pipeline: open state store in %s (bubbleup.state_dir): %w", dir, err)
	}
	s.db = db
	s.dbForMetrics.Store(db)
	return func() error {
		s.dbForMetrics.Store(nil)
		err := db.Close()
		if own {
			err = errors.Join(err, os.RemoveAll(dir))
		}
		return err
	}, nil
}

// ensureTopics creates the topics the stage reads and writes when missing and returns the
// partition counts of the reference topics by table.
func (s *Stage) ensureTopics(ctx context.Context) (map[string]int, error) {
	k := s.cfg.Kafka
	adm := kadm.NewClient(s.admin)
	specs := []kafkaconn.TopicSpec{{Name: s.inexactTopic, Partitions: k.Partitions, ReplicationFactor: k.ReplicationFactor,
		Configs: map[string]string{"cleanup.policy": "delete"}}, deadletter.TopicSpec(s.cfg, config.StageBubbleUp)}
	compact := map[string]string{"cleanup.policy": "compact"}
	refTopics := map[string]string{} // topic → table
	for _, rm := range s.roots {
		specs = append(specs,
			kafkaconn.TopicSpec{Name: rm.changeTopic, Partitions: k.Partitions, ReplicationFactor: k.ReplicationFactor},
			kafkaconn.TopicSpec{Name: rm.snapshotTopic, Partitions: k.Partitions, ReplicationFactor: k.ReplicationFactor})
		for _, ref := range rm.refs {
			t := k.ReferenceTopic(ref.Table)
			if _, dup := refTopics[t]; !dup {
				refTopics[t] = ref.Table
				specs = append(specs, kafkaconn.TopicSpec{Name: t, Partitions: k.Partitions, ReplicationFactor: k.ReplicationFactor, Configs: s.cfg.ReferenceTopicConfigs()})
			}
		}
	}
	if err := createTopics(ctx, adm, kafkaconn.WithRecordLimits(k, specs)); err != nil {
		return nil, err
	}
	if err := s.ensureReferenceHistory(ctx, adm, slices.Sorted(maps.Keys(refTopics))); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(specs))
	for _, sp := range specs {
		names = append(names, sp.Name)
	}
	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("pipeline: describe topics: %w", err)
	}
	changelogParts := int32(0)
	for _, rm := range s.roots {
		changelogParts = max(changelogParts, int32(len(details[rm.changeTopic].Partitions)))
	}
	if changelogParts == 0 { // just created: metadata may not list the partitions yet
		changelogParts = k.Partitions
	}
	err = createTopics(ctx, adm, kafkaconn.WithRecordLimits(k, []kafkaconn.TopicSpec{{Name: s.changelog, Partitions: changelogParts, ReplicationFactor: k.ReplicationFactor, Configs: compact}}))
	if err != nil {
		return nil, err
	}
	if err := kafkaconn.CheckRecordLimit(ctx, adm, k, append(names, s.changelog)...); err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	cl, err := adm.ListTopics(ctx, s.changelog)
	if err != nil {
		return nil, fmt.Errorf("pipeline: describe changelog %s: %w", s.changelog, err)
	}
	if got := int32(len(cl[s.changelog].Partitions)); got > 0 && got < changelogParts {
		return nil, fmt.Errorf("pipeline: changelog %s has %d partitions but the change topics have up to %d: add partitions to it (kafka-topics.sh --alter --partitions %d)",
			s.changelog, got, changelogParts, changelogParts)
	}
	refParts := map[string]int{}
	for topic, table := range refTopics {
		refParts[table] = len(details[topic].Partitions)
		if refParts[table] == 0 {
			refParts[table] = int(k.Partitions)
		}
	}
	return refParts, nil
}

// createTopics creates each topic that does not exist. (kafkaconn.EnsureTopics takes a topic that
// kfake's metadata lists without partitions for an existing one, so the stage creates directly
// and accepts TOPIC_ALREADY_EXISTS.)
func createTopics(ctx context.Context, adm *kadm.Client, specs []kafkaconn.TopicSpec) error {
	var errs []error
	for _, sp := range specs {
		configs := make(map[string]*string, len(sp.Configs))
		for k, v := range sp.Configs {
			configs[k] = &v
		}
		resp, err := adm.CreateTopic(ctx, sp.Partitions, sp.ReplicationFactor, configs, sp.Name)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("pipeline: create topic %q (partitions %d, configs %v): %w; create it by hand or grant walhook's principal CREATE on the cluster",
				sp.Name, sp.Partitions, sp.Configs, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	names := make([]string, len(specs))
	for i, sp := range specs {
		names[i] = sp.Name
	}
	if err := kafkaconn.WaitForTopics(ctx, adm, names...); err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	return nil
}

func (s *Stage) newRefReader(refParts map[string]int) (*refReader, error) {
	tables := map[string]string{}
	var topics []string
	for table := range refParts {
		t := s.cfg.Kafka.ReferenceTopic(table)
		tables[t] = table
		topics = append(topics, t)
	}
	opts := append(append([]kgo.Opt(nil), s.connOpts...),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Fetches of a few MiB: the reader writes what it fetched to disk, and a larger buffer
		// (kgo's default is 50 MiB) only costs memory while it reads a large topic.
		kgo.FetchMaxBytes(4<<20),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("pipeline: reference reader client: %w", err)
	}
	byTopic := map[string]*refTable{}
	for topic, table := range tables {
		byTopic[topic] = s.layout[table]
	}
	return &refReader{cl: cl, tables: byTopic, refs: s.refs, dec: newDecoder(s.reg), log: s.log.Named("refs"), parts: map[topicPartition]*refPartRead{}, asm: chunked.NewAssembler(false),
		poison: s.refPoison}, nil
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// pebbleLogger sends Pebble's log lines to zap; Fatalf panics (Pebble found its store corrupt)
// instead of exiting the process.
type pebbleLogger struct{ l *zap.SugaredLogger }

func (p pebbleLogger) Infof(format string, args ...any)  { p.l.Debugf(format, args...) }
func (p pebbleLogger) Errorf(format string, args ...any) { p.l.Errorf(format, args...) }
func (p pebbleLogger) Fatalf(format string, args ...any) { p.l.Panicf("pebble: "+format, args...) }
