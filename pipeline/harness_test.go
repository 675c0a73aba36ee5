package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/kafkaconn"
	"github.com/walhook/walhook/internal/kafkatest"
)

// testConfig is a config for env with a unique topic prefix and the given model YAML (a document
// with a model: section).
func testConfig(t testing.TB, env *kafkatest.Env, modelYAML string) *config.Config {
	t.Helper()
	var doc struct {
		Model config.Model `yaml:"model"`
	}
	if err := yaml.Unmarshal([]byte(modelYAML), &doc); err != nil {
		t.Fatalf("model yaml: %v", err)
	}
	cfg := &config.Config{Model: doc.Model}
	cfg.Kafka.Brokers = env.Brokers
	cfg.Kafka.TopicPrefix = kafkatest.TopicName(t, "wh") + "."
	cfg.Kafka.Partitions = 3
	cfg.SetDefaults()
	return cfg
}

func testRegistry(t testing.TB, env *kafkatest.Env) avro.Registry {
	t.Helper()
	cl, err := sr.NewClient(sr.URLs(env.RegistryURL))
	if err != nil {
		t.Fatalf("schema registry client: %v", err)
	}
	return avro.NewConfluentRegistry(cl)
}

// runStage starts a stage and returns a stop function that cancels it and returns Run's error.
func runStage(t testing.TB, cfg *config.Config, reg avro.Registry, opts ...Option) (stop func() error) {
	t.Helper()
	base := []Option{WithRegistry(reg)}
	if os.Getenv("WALHOOK_TEST_LOG") != "" {
		l, _ := zap.NewDevelopment()
		base = append(base, WithLogger(l))
	}
	s, err := New(cfg, append(base, opts...)...)
	if err != nil {
		t.Fatalf("pipeline.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	var runErr error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(30 * time.Second):
				runErr = errors.New("Run did not return within 30s of cancel")
			}
		}
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stage Run: %v", err)
		}
	})
	return stop
}

// col is a column of a fake table: name and pg type name.
type col struct{ name, typ string }

// fakeCDC writes change records, TxnEnd markers and watermarks the way the cdc stage does, so the
// stage can be driven without PostgreSQL.
type fakeCDC struct {
	t       testing.TB
	cfg     *config.Config
	cl      *kgo.Client
	reg     avro.Registry
	schemas map[string]*avro.ChangeSchema
	roots   map[string]*config.Root // table → root it belongs to (nil for a reference table)
	lsn     uint64
	xid     uint32
	// The marker schemas, parsed once: parsing them per transaction cost the benchmarks more
	// CPU than the stage they measure.
	endSchema, wmSchema *avro.Schema
}

func newFakeCDC(t testing.TB, env *kafkatest.Env, cfg *config.Config, reg avro.Registry, tables map[string][]col) *fakeCDC {
	f := &fakeCDC{t: t, cfg: cfg, reg: reg, schemas: map[string]*avro.ChangeSchema{}, roots: map[string]*config.Root{}, lsn: 0x1000000, xid: 700}
	var err error
	if f.endSchema, err = avro.ParseSchema(avro.TxnEndSchema()); err != nil {
		t.Fatalf("txn-end schema: %v", err)
	}
	if f.wmSchema, err = avro.ParseSchema(avro.WatermarkSchema()); err != nil {
		t.Fatalf("watermark schema: %v", err)
	}
	byKey := kgo.StickyKeyPartitioner(nil)
	f.cl = kafkatest.Client(t, env, kgo.RecordPartitioner(kgo.BasicConsistentPartitioner(func(topic string) func(*kgo.Record, int) int {
		keyed := byKey.ForTopic(topic)
		return func(r *kgo.Record, n int) int {
			if k := header(r, headerKind); k == "watermark" || k == "truncate" || k == "truncate-end" {
				return int(r.Partition)
			}
			return keyed.Partition(r, n)
		}
	})))
	for name, cols := range tables {
		var tb avro.Table
		for i := range name {
			if name[i] == '.' {
				tb.Schema, tb.Name = name[:i], name[i+1:]
				break
			}
		}
		for _, c := range cols {
			tb.Columns = append(tb.Columns, avro.Column{Name: c.name, TypeName: c.typ, Nullable: true, Key: c.name == "id"})
		}
		cs, err := avro.NewChangeSchema(tb)
		if err != nil {
			t.Fatalf("change schema %s: %v", name, err)
		}
		f.schemas[name] = cs
	}
	var specs []kafkaconn.TopicSpec
	for _, role := range cfg.Model.TableRoles() {
		if role.Root != nil {
			f.roots[role.Table] = role.Root
			specs = append(specs, kafkaconn.TopicSpec{Name: cfg.Kafka.ChangeTopic(*role.Root), Partitions: cfg.Kafka.Partitions, ReplicationFactor: -1})
		} else {
			specs = append(specs, kafkaconn.TopicSpec{Name: cfg.Kafka.ReferenceTopic(role.Table), Partitions: cfg.Kafka.Partitions, ReplicationFactor: -1,
				Configs: map[string]string{"cleanup.policy": "compact"}})
		}
	}
	if err := createTopics(context.Background(), kadm.NewClient(f.cl), specs); err != nil {
		t.Fatalf("create topics: %v", err)
	}
	return f
}

// change is one row change of a fake transaction: table, op, the key the record goes under, and
// the row images as column → text (a missing column is null; "\x00" marks unchanged TOAST).
type change struct {
	table  string
	op     avro.Op
	key    string
	before map[string]string
	after  map[string]string
}

const unchangedTOAST = "\x00"

func (f *fakeCDC) cells(table string, img map[string]string) []avro.Cell {
	if img == nil {
		return nil
	}
	cols := f.schemas[table].Table().Columns
	out := make([]avro.Cell, len(cols))
	for i, c := range cols {
		v, ok := img[c.Name]
		switch {
		case !ok:
			out[i] = avro.Cell{Kind: avro.CellNull}
		case v == unchangedTOAST:
			out[i] = avro.Cell{Kind: avro.CellUnchanged}
		default:
			out[i] = avro.Cell{Kind: avro.CellText, Data: []byte(v)}
		}
	}
	return out
}

func (f *fakeCDC) framed(topic string, s *avro.Schema, body []byte) []byte {
	prefix, err := f.reg.Prefix(context.Background(), topic, s)
	if err != nil {
		f.t.Fatalf("registry prefix: %v", err)
	}
	return append(append([]byte(nil), prefix...), body...)
}

// txn writes one source transaction: its changes in order, then a TxnEnd per root touched, then a
// watermark on every partition of every reference topic. It returns the commit LSN.
func (f *fakeCDC) txn(changes ...change) uint64 {
	f.t.Helper()
	f.lsn += 0x100
	f.xid++
	return f.txnAt(f.lsn, f.xid, changes...)
}

func (f *fakeCDC) txnAt(lsn uint64, xid uint32, changes ...change) uint64 {
	f.t.Helper()
	if err := f.cl.ProduceSync(context.Background(), f.records(lsn, xid, changes...)...).FirstErr(); err != nil {
		f.t.Fatalf("produce fake cdc records: %v", err)
	}
	return lsn
}

// txnAtNoFlush is txnAt without waiting for the acknowledgements (call cl.Flush after).
func (f *fakeCDC) txnAtNoFlush(lsn uint64, xid uint32, changes ...change) {
	for _, r := range f.records(lsn, xid, changes...) {
		f.cl.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
			if err != nil {
				panic(err)
			}
		})
	}
}

func (f *fakeCDC) records(lsn uint64, xid uint32, changes ...change) []*kgo.Record {
	ctime := time.Date(2026, 2, 3, 11, 15, 0, 0, time.UTC).Add(time.Duration(lsn-0x1000000) * time.Millisecond)
	type rootKey struct {
		root *config.Root
		key  string
	}
	var order []rootKey
	rows := map[rootKey]int32{}
	var recs []*kgo.Record
	for i, c := range changes {
		h := avro.ChangeHeader{Op: c.op, CommitLSN: lsn, Xid: xid, CommitTime: ctime, Index: int64(i)}
		cs := f.schemas[c.table]
		body, err := cs.AppendChange(nil, h, f.cells(c.table, c.before), f.cells(c.table, c.after))
		if err != nil {
			f.t.Fatalf("append change: %v", err)
		}
		root := f.roots[c.table]
		topic := f.cfg.Kafka.ReferenceTopic(c.table)
		if root != nil {
			topic = f.cfg.Kafka.ChangeTopic(*root)
			rk := rootKey{root, c.key}
			if _, seen := rows[rk]; !seen {
				order = append(order, rk)
			}
			rows[rk]++
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(c.key), Value: f.framed(topic, cs.Schema(), body),
			Headers: headers("change", c.table, c.op.String(), lsn)})
	}
	for _, rk := range order {
		topic := f.cfg.Kafka.ChangeTopic(*rk.root)
		body := avro.AppendTxnEnd(nil, avro.TxnEnd{Table: rk.root.Table, RootKey: rk.key, CommitLSN: lsn, Xid: xid, CommitTime: ctime, Rows: rows[rk]})
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(rk.key), Value: f.framed(topic, f.endSchema, body),
			Headers: headers("txn-end", rk.root.Table, "", lsn)})
	}
	return append(recs, f.watermarks(lsn, ctime)...)
}

func (f *fakeCDC) watermarks(lsn uint64, at time.Time) []*kgo.Record {
	var recs []*kgo.Record
	seen := map[string]bool{}
	for _, r := range f.cfg.Model.Roots {
		for _, ref := range r.References {
			topic := f.cfg.Kafka.ReferenceTopic(ref.Table)
			if seen[topic] {
				continue
			}
			seen[topic] = true
			for p := int32(0); p < f.cfg.Kafka.Partitions; p++ {
				body := avro.AppendWatermark(nil, avro.Watermark{CommitLSN: lsn, Time: at})
				recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Key: []byte("\x00watermark"), Value: f.framed(topic, f.wmSchema, body),
					Headers: headers("watermark", ref.Table, "", lsn)})
			}
		}
	}
	return recs
}

func headers(kind, table, op string, lsn uint64) []kgo.RecordHeader {
	return []kgo.RecordHeader{
		{Key: headerKind, Value: []byte(kind)},
		{Key: headerTable, Value: []byte(table)},
		{Key: headerOp, Value: []byte(op)},
		{Key: headerLSN, Value: []byte(lsnText(lsn))},
	}
}

// snapshots reads the root's snapshot topic (read_committed) until it holds n records, and
// decodes them.
func snapshots(t testing.TB, env *kafkatest.Env, reg avro.Registry, topic string, n int) []avro.Snapshot {
	t.Helper()
	recs := kafkatest.ConsumeAll(t, env, topic, n, 60*time.Second, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	out := make([]avro.Snapshot, 0, len(recs))
	for _, r := range recs {
		_, body, err := reg.Resolve(context.Background(), r.Value)
		if err != nil {
			t.Fatalf("resolve snapshot: %v", err)
		}
		s, err := avro.DecodeSnapshot(body)
		if err != nil {
			t.Fatalf("decode snapshot: %v", err)
		}
		if string(r.Key) != s.Key {
			t.Fatalf("snapshot key %q but record key %q", s.Key, r.Key)
		}
		out = append(out, s)
	}
	return out
}

// checkVersions verifies that each root's versions are 1..n in order, with no gap or repeat, and
// returns the last snapshot of each root.
func checkVersions(t testing.TB, snaps []avro.Snapshot) map[string]avro.Snapshot {
	t.Helper()
	last := map[string]avro.Snapshot{}
	for _, s := range snaps {
		prev := last[s.Key].Version
		if s.Version != prev+1 {
			t.Fatalf("root %s: version %d after %d (verb %s, LSN %s)", s.Key, s.Version, prev, s.Verb, lsnText(s.CommitLSN))
		}
		last[s.Key] = s
	}
	return last
}

// sameShape compares two JSON documents: equal key sets, equal JSON types, recursively; values
// are compared where want is not the string "*".
func sameShape(path string, want, got any) error {
	if w, ok := want.(string); ok && w == "*" {
		return nil
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want object, got %T", path, got)
		}
		if kw, kg := keys(w), keys(g); fmt.Sprint(kw) != fmt.Sprint(kg) {
			return fmt.Errorf("%s: keys %v, want %v", path, kg, kw)
		}
		for k := range w {
			if err := sameShape(path+"."+k, w[k], g[k]); err != nil {
				return err
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("%s: want array of %d, got %v", path, len(w), got)
		}
		for i := range w {
			if err := sameShape(fmt.Sprintf("%s[%d]", path, i), w[i], g[i]); err != nil {
				return err
			}
		}
	default:
		if fmt.Sprintf("%T %v", want, want) != fmt.Sprintf("%T %v", got, got) {
			return fmt.Errorf("%s: got %T %v, want %T %v", path, got, got, want, want)
		}
	}
	return nil
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func mustJSON(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("payload is not JSON: %v\n%s", err, b)
	}
	return v
}

// demoTables are the demo schema's columns in table order.
var demoTables = map[string][]col{
	"incident.instance": {{"id", "int4"}, {"name", "text"}, {"description", "text"}, {"status", "text"}, {"severity", "text"},
		{"start_time", "timestamptz"}, {"end_time", "timestamptz"}, {"resolution_notes", "text"}, {"session_instance_id", "int4"},
		{"external_id", "text"}, {"created_at", "timestamptz"}, {"created_by", "int4"}, {"updated_at", "timestamptz"},
		{"updated_by", "int4"}, {"tenant_id", "text"}, {"is_deleted", "bool"}},
	"incident.timeline": {{"id", "int4"}, {"incident_instance_id", "int4"}, {"action", "text"}, {"description", "text"},
		{"created_at", "timestamptz"}, {"created_by", "int4"}, {"updated_at", "timestamptz"}, {"updated_by", "int4"},
		{"is_deleted", "bool"}, {"tenant_id", "text"}},
	"session.instance": {{"id", "int4"}, {"uuid", "uuid"}, {"score", "int4"}, {"status", "text"}, {"created_at", "timestamptz"},
		{"updated_at", "timestamptz"}, {"tenant_id", "text"}},
}

var demoModel = demo.ModelYAML
