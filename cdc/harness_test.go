package cdc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/kafkatest"
	"github.com/walhook/walhook/internal/pgtest"
)

// env is one test's PostgreSQL database, Kafka and config.
type env struct {
	t    *testing.T
	pg   *pgtest.Server
	url  string
	kafk *kafkatest.Env
	cfg  *config.Config
	db   *pgx.Conn
	runs []*running // every stage started, for waitActive
}

// newEnv starts PostgreSQL (demo schema applied) and Kafka, and builds a config of model
// (the demo model when empty).
func newEnv(t *testing.T, model string) *env {
	t.Helper()
	return newEnvOn(t, model, kafkatest.Start(t))
}

// newEnvOn is newEnv on a given Kafka (a test's own Apache Kafka cluster, for broker faults).
func newEnvOn(t *testing.T, model string, k *kafkatest.Env) *env {
	t.Helper()
	pg := pgtest.Start(t)
	url := pgtest.NewDatabase(t, pg)
	e := &env{t: t, pg: pg, url: url, kafk: k}
	e.db = e.connect()
	e.exec(demo.SchemaSQL)
	if model == "" {
		model = demo.ModelYAML
	}
	base := &config.Config{Postgres: config.Postgres{URL: url}, Kafka: config.Kafka{Brokers: k.Brokers}}
	cfg, err := config.ParseWith([]byte(model), "test", config.Options{Base: base})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	cfg.Kafka.TopicPrefix = kafkatest.TopicName(t, "w") + "."
	cfg.CDC.StatusInterval = 100 * time.Millisecond
	cfg.CDC.HeartbeatInterval = 300 * time.Millisecond
	cfg.CDC.ManageReplicaIdentity = true
	cfg.CDC.SpillDir = t.TempDir()
	e.cfg = cfg
	return e
}

func (e *env) connect() *pgx.Conn {
	e.t.Helper()
	c, err := pgx.Connect(context.Background(), e.url)
	if err != nil {
		e.t.Fatalf("connect: %v", err)
	}
	e.t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.db.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("exec %.80q: %v", sql, err)
	}
}

// running is a Stage running in the background.
type running struct {
	stage  *Stage
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func (e *env) start(name string, opts ...Option) *running {
	e.t.Helper()
	log := zaptest.NewLogger(e.t, zaptest.Level(zap.InfoLevel)).Named(name)
	s, err := New(e.cfg, append([]Option{WithLogger(log), WithRegisterer(prometheus.NewRegistry())}, opts...)...)
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{stage: s, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	e.runs = append(e.runs, r)
	e.t.Cleanup(func() { _ = r.stop() })
	return r
}

// stop cancels Run and returns its error.
func (r *running) stop() error {
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(30 * time.Second):
			r.err = errors.New("Run did not return within 30s of cancel")
		}
	})
	return r.err
}

// waitActive waits until the slot is streamed by some process and its requested snapshots
// are finished (snapshot_test.go).
func (e *env) waitActive() {
	e.t.Helper()
	kafkatest.Eventually(e.t, 60*time.Second, func() error {
		var active bool
		err := e.db.QueryRow(context.Background(), `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, e.cfg.Postgres.Slot).Scan(&active)
		if err != nil || !active {
			return fmt.Errorf("slot not active (%v)", err)
		}
		return nil
	})
	e.waitSnapshots()
}

func (e *env) confirmedFlush() uint64 {
	e.t.Helper()
	var lsn string
	if err := e.db.QueryRow(context.Background(), `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, e.cfg.Postgres.Slot).Scan(&lsn); err != nil {
		e.t.Fatalf("confirmed_flush_lsn: %v", err)
	}
	var hi, lo uint64
	fmt.Sscanf(lsn, "%X/%X", &hi, &lo)
	return hi<<32 | lo
}

func (e *env) currentLSN() uint64 {
	e.t.Helper()
	var lsn string
	if err := e.db.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&lsn); err != nil {
		e.t.Fatalf("pg_current_wal_lsn: %v", err)
	}
	var hi, lo uint64
	fmt.Sscanf(lsn, "%X/%X", &hi, &lo)
	return hi<<32 | lo
}

// rec is a decoded record of a change topic.
type rec struct {
	r      *kgo.Record
	kind   string
	change *avro.Change
	end    *avro.TxnEnd    // also the body of a truncate-end
	mark   *avro.Watermark // a watermark's or a truncate's body
}

func header(r *kgo.Record, k string) string {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

// consumer reads topics from the start and decodes what it reads.
type consumer struct {
	e   *env
	cl  *kgo.Client
	reg avro.Registry
	got []rec
}

func (e *env) consume(topics ...string) *consumer {
	cl := kafkatest.Client(e.t, e.kafk, kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	reg := avro.NewTopicRegistry(kafkatest.Client(e.t, e.kafk), e.cfg.Kafka.TopicPrefix+"schemas")
	return &consumer{e: e, cl: cl, reg: reg}
}

// until polls until pred holds on everything read so far.
func (c *consumer) until(timeout time.Duration, pred func([]rec) error) []rec {
	c.e.t.Helper()
	deadline := time.Now().Add(timeout)
	// pred usually folds every record so far: it runs when a poll came back empty (caught up) or
	// a second after its last run, not after every fetch, which made long runs quadratic (a real
	// broker returns smaller fetches than kfake).
	var checked time.Time
	idle := true
	for {
		if idle || time.Since(checked) >= time.Second || time.Now().After(deadline) {
			err := pred(c.got)
			if err == nil {
				return c.got
			}
			if time.Now().After(deadline) {
				c.e.t.Fatalf("after %d records: %v", len(c.got), err)
			}
			checked = time.Now()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		fs := c.cl.PollFetches(ctx)
		cancel()
		idle = fs.NumRecords() == 0
		for _, r := range fs.Records() {
			c.got = append(c.got, c.decode(r))
		}
	}
}

func (c *consumer) decode(r *kgo.Record) rec {
	c.e.t.Helper()
	out := rec{r: r, kind: header(r, "walhook-kind")}
	schema, body, err := c.reg.Resolve(context.Background(), r.Value)
	if err != nil {
		c.e.t.Fatalf("resolve %s: %v", r.Topic, err)
	}
	switch out.kind {
	case "change":
		if out.change, err = avro.DecodeChange(schema, body); err != nil {
			c.e.t.Fatalf("decode change: %v", err)
		}
	case "txn-end":
		te, err := avro.DecodeTxnEnd(body)
		if err != nil {
			c.e.t.Fatalf("decode txn end: %v", err)
		}
		out.end = &te
	case "truncate-end":
		te, err := avro.DecodeTxnEnd(body)
		if err != nil {
			c.e.t.Fatalf("decode truncate end: %v", err)
		}
		out.end = &te
	case "watermark", "truncate":
		wm, err := avro.DecodeWatermark(body)
		if err != nil {
			c.e.t.Fatalf("decode %s: %v", out.kind, err)
		}
		out.mark = &wm
	}
	return out
}

func changes(rs []rec, table string) []rec {
	var out []rec
	for _, r := range rs {
		if r.kind == "change" && r.change.Table == table {
			out = append(out, r)
		}
	}
	return out
}

func countKind(rs []rec, kind string) int {
	n := 0
	for _, r := range rs {
		if r.kind == kind {
			n++
		}
	}
	return n
}

func atLeast(n int, what string, f func([]rec) int) func([]rec) error {
	return func(rs []rec) error {
		if got := f(rs); got < n {
			return fmt.Errorf("%s: %d of %d", what, got, n)
		}
		return nil
	}
}

func val(r *avro.Row, col string) string {
	if r == nil {
		return "<no row>"
	}
	v, _ := r.Get(col)
	return strings.TrimSpace(fmt.Sprint(v))
}

// parseModel parses a model document over the env's config.
func parseModel(e *env, doc string) (config.Model, error) {
	base := *e.cfg
	base.Model = config.Model{}
	cfg, err := config.ParseWith([]byte(doc), "test", config.Options{Base: &base})
	if err != nil {
		return config.Model{}, err
	}
	return cfg.Model, nil
}

// randomText is n bytes of incompressible text, stored out of line by TOAST.
func randomText(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	x := uint64(88172645463325252)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = alphabet[x%uint64(len(alphabet))]
	}
	return string(b)
}
