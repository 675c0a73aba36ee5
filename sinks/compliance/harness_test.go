package compliance_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"go.yaml.in/yaml/v3"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/kafkatest"
	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/sinks/compliance"
)

// harness is one test's Kafka, registry and PostgreSQL database with the demo schema.
type harness struct {
	t     testing.TB
	env   *kafkatest.Env
	cfg   *config.Config
	sr    *sr.Client
	reg   avro.Registry // frames snapshot records like the bubble-up stage
	pgURL string
	prod  *kgo.Client
}

func newHarness(t testing.TB, modelYAML string) *harness {
	t.Helper()
	env := kafkatest.Start(t)
	pgURL := pgtest.NewDatabase(t, pgtest.Start(t))
	execSQL(t, pgURL, demo.SchemaSQL)
	var doc struct {
		Model config.Model `yaml:"model"`
	}
	if err := yaml.Unmarshal([]byte(modelYAML), &doc); err != nil {
		t.Fatalf("model yaml: %v", err)
	}
	cfg := &config.Config{Model: doc.Model}
	cfg.Postgres.URL = pgURL
	cfg.Kafka.Brokers = env.Brokers
	cfg.Kafka.TopicPrefix = kafkatest.TopicName(t, "wh") + "."
	cfg.Kafka.Partitions = 3
	cfg.SchemaRegistry.URL = env.RegistryURL
	cfg.Compliance.TransactionTimeout = 5 * time.Second
	cfg.SetDefaults()
	cfg.Compliance.SetDefaults(cfg.Kafka)
	cl, err := sr.NewClient(sr.URLs(env.RegistryURL))
	if err != nil {
		t.Fatalf("schema registry client: %v", err)
	}
	h := &harness{t: t, env: env, cfg: cfg, sr: cl, reg: avro.NewConfluentRegistry(cl), pgURL: pgURL}
	h.prod = kafkatest.Client(t, env, kgo.AllowAutoTopicCreation())
	adm := kadm.NewClient(h.prod)
	resp, err := adm.CreateTopic(context.Background(), 3, -1, nil, h.snapshotTopic())
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create snapshot topic: %v", err)
	}
	return h
}

func execSQL(t testing.TB, url, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("exec %.60q: %v", sql, err)
	}
}

func (h *harness) root() config.Root { return h.cfg.Model.Roots[0] }

func (h *harness) snapshotTopic() string { return h.cfg.Kafka.SnapshotTopic(h.root()) }

func (h *harness) logTopic() string { return h.cfg.Compliance.Log.Topic(h.cfg.Kafka, h.root()) }

func (h *harness) latestTopic() string { return h.cfg.Compliance.Latest.Topic(h.cfg.Kafka, h.root()) }

// produce writes snapshots to the root's snapshot topic exactly as the bubble-up stage frames them.
func (h *harness) produce(snaps ...avro.Snapshot) {
	h.t.Helper()
	ctx := context.Background()
	schema, err := avro.ParseSchema(avro.SnapshotSchema())
	if err != nil {
		h.t.Fatal(err)
	}
	prefix, err := h.reg.Prefix(ctx, h.snapshotTopic(), schema)
	if err != nil {
		h.t.Fatal(err)
	}
	recs := make([]*kgo.Record, len(snaps))
	for i, s := range snaps {
		recs[i] = &kgo.Record{Topic: h.snapshotTopic(), Key: []byte(s.Key), Value: avro.AppendSnapshot(append([]byte(nil), prefix...), s)}
	}
	if err := h.prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		h.t.Fatalf("produce snapshots: %v", err)
	}
}

// run starts a sink and returns a stop function that cancels it and returns Run's error, and a
// channel closed when Run returned (by itself or after stop).
func (h *harness) run(opts ...compliance.Option) (stop func() error, done <-chan struct{}) {
	h.t.Helper()
	s, err := compliance.New(h.cfg, opts...)
	if err != nil {
		h.t.Fatalf("compliance.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan struct{})
	var runErr error
	go func() {
		defer close(ch)
		runErr = s.Run(ctx)
	}()
	stop = func() error {
		cancel()
		select {
		case <-ch:
			return runErr
		case <-time.After(30 * time.Second):
			return errors.New("Run did not return within 30s of cancel")
		}
	}
	h.t.Cleanup(func() {
		if err := stop(); err != nil && !h.t.Failed() && !errors.Is(err, compliance.ErrIncompatible) && !strings.Contains(err.Error(), "cleanup.policy") {
			h.t.Errorf("compliance Run: %v", err)
		}
	})
	return stop, ch
}

// committed counts the committed records of topic: it reads with read_committed until no record
// came for quiet.
func (h *harness) committed(topic string, quiet time.Duration) int {
	h.t.Helper()
	cl := kafkatest.Client(h.t, h.env, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	n := 0
	for {
		ctx, cancel := context.WithTimeout(context.Background(), quiet)
		fs := cl.PollFetches(ctx)
		cancel()
		got := len(fs.Records())
		if got == 0 {
			return n
		}
		n += got
	}
}

// decoded is one compliance record decoded by goavro from the registry's schema text.
type decoded struct {
	key      string
	value    map[string]any // nil for a tombstone
	schemaID int
	rec      *kgo.Record
}

// consume reads n records of topic (read_committed) and decodes each with goavro from the schema
// text the registry holds for its id: a decoder that shares nothing with the sink's encoder.
func (h *harness) consume(topic string, n int) []decoded {
	h.t.Helper()
	recs := kafkatest.ConsumeAll(h.t, h.env, topic, n, 60*time.Second, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	out := make([]decoded, len(recs))
	codecs := map[int]*goavro.Codec{}
	for i, r := range recs {
		out[i] = decoded{key: string(r.Key), rec: r}
		if r.Value == nil {
			continue
		}
		if len(r.Value) < 5 || r.Value[0] != 0 {
			h.t.Fatalf("%s@%d: not Confluent framed: % x", topic, r.Offset, r.Value[:min(len(r.Value), 8)])
		}
		id := int(r.Value[1])<<24 | int(r.Value[2])<<16 | int(r.Value[3])<<8 | int(r.Value[4])
		codec := codecs[id]
		if codec == nil {
			s, err := h.sr.SchemaByID(context.Background(), id)
			if err != nil {
				h.t.Fatalf("schema %d: %v", id, err)
			}
			if codec, err = goavro.NewCodec(s.Schema); err != nil {
				h.t.Fatalf("schema %d: %v", id, err)
			}
			codecs[id] = codec
		}
		v, rest, err := codec.NativeFromBinary(r.Value[5:])
		if err != nil || len(rest) != 0 {
			h.t.Fatalf("%s@%d: decode with schema %d: %v (%d bytes left)", topic, r.Offset, id, err, len(rest))
		}
		out[i].value, out[i].schemaID = v.(map[string]any), id
	}
	return out
}

// seed is the contract's story for incident 134: v1 created with an empty timeline, v2 updated
// (resolved) with one timeline entry, and the referenced session.
func seed(version int64, extra map[string]any) avro.Snapshot {
	session := map[string]any{"id": 2523, "uuid": "019c22ef-edc6-765d-9ab3-c2acf41b5253", "score": 85, "status": "COMPLETED",
		"created_at": "2026-02-03T09:57:55.341Z", "updated_at": "2026-02-03T11:15:00.000Z"}
	p := map[string]any{
		"id": 134, "name": "Face not detected", "description": nil, "status": "TRIGGERED", "severity": "LOW",
		"start_time": "2026-02-03T10:46:23.260Z", "end_time": nil, "resolution_notes": nil,
		"session_instance_id": 2523, "external_id": nil, "created_at": "2026-02-03T09:57:55.341Z", "created_by": 1,
		"updated_at": "2026-02-03T09:57:55.341Z", "updated_by": 1, "session": session, "timeline": []any{},
	}
	verb := avro.VerbCreated
	if version > 1 {
		verb = avro.VerbUpdated
		p["status"], p["end_time"] = "RESOLVED", "2026-02-03T11:15:00.000Z"
		p["resolution_notes"] = "Confirmed candidate was adjusting camera. No violation."
		p["updated_at"] = "2026-02-03T11:15:00.000Z"
		p["timeline"] = []any{map[string]any{"id": 1, "action": "ESCALATED", "description": "Auto-escalated after 5 minutes without face detection.",
			"created_at": "2026-02-03T10:51:23.260Z", "created_by": 0, "updated_at": "2026-02-03T10:51:23.260Z", "updated_by": 0}}
	}
	for k, v := range extra {
		p[k] = v
	}
	return snapshot("134", version, verb, p)
}

func snapshot(key string, version int64, verb avro.Verb, payload map[string]any) avro.Snapshot {
	b, err := json.Marshal(payload)
	if err != nil {
		panic(err)
	}
	return avro.Snapshot{
		RootType: "incident.instance", EventPrefix: "incident.instance", Key: key, Tenant: "tenant-a",
		EventType: "incident_instance_" + verb.String(), Verb: verb, Version: version,
		CommitLSN: uint64(0x16B374D848 + version), CommitTime: time.Date(2026, 2, 3, 11, 15, 0, int(version)*1000, time.UTC),
		Payload: b,
	}
}

// incident is a minimal valid payload of incident key with a version-dependent field.
func incident(key int, version int64) avro.Snapshot {
	verb := avro.VerbUpdated
	if version == 1 {
		verb = avro.VerbCreated
	}
	p := map[string]any{
		"id": key, "name": "n" + strconv.FormatInt(version, 10), "description": nil, "status": "TRIGGERED", "severity": "LOW",
		"start_time": "2026-02-03T10:46:23.260Z", "end_time": nil, "resolution_notes": nil,
		"session_instance_id": 2523, "external_id": nil, "created_at": "2026-02-03T09:57:55.341Z", "created_by": 1,
		"updated_at": "2026-02-03T09:57:55.341Z", "updated_by": int(version), "session": nil, "timeline": []any{},
	}
	return snapshot(strconv.Itoa(key), version, verb, p)
}

func union(v any) any {
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		for _, x := range m {
			return x
		}
	}
	return v
}

func field(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, ok := union(v).(map[string]any)
		if !ok {
			return fmt.Sprintf("<no %s>", p)
		}
		v = mm[p]
	}
	return union(v)
}
