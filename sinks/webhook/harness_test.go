package webhook_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/kafkatest"
	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/sinks/webhook"
)

// servers are shared by the subtests of one top-level test; each subtest gets its own
// database, topic prefix and group.
type servers struct {
	kafka *kafkatest.Env
	pg    *pgtest.Server
}

func startServers(t testing.TB) *servers {
	return &servers{kafka: kafkatest.Start(t), pg: pgtest.Start(t)}
}

type harness struct {
	t      testing.TB
	cfg    *config.Config
	root   config.Root
	admin  *webhook.Admin
	app    webhook.App
	prod   *kgo.Client
	reg    avro.Registry
	prefix []byte
}

func newHarness(t testing.TB, s *servers, mods ...func(*config.Config)) *harness {
	t.Helper()
	ctx := t.Context()
	dbURL := pgtest.NewDatabase(t, s.pg)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, demo.SchemaSQL); err != nil {
		t.Fatalf("apply demo schema: %v", err)
	}
	_ = conn.Close(ctx)

	var b [4]byte
	_, _ = rand.Read(b[:])
	cfg := &config.Config{}
	cfg.Postgres.URL = dbURL
	cfg.Kafka.Brokers = s.kafka.Brokers
	cfg.Kafka.TopicPrefix = "t" + hex.EncodeToString(b[:]) + "."
	cfg.Kafka.Partitions = 3
	cfg.Model.Roots = []config.Root{{Table: "incident.instance", Key: "id"}}
	cfg.SetDefaults()
	cfg.Deliver.AllowLoopback = true
	cfg.Deliver.RetrySchedule = []time.Duration{200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond}
	cfg.Deliver.RetryTiers = []time.Duration{time.Second}
	cfg.Deliver.CircuitFailures = 100000
	cfg.Deliver.RequestTimeout = 2 * time.Second
	cfg.Deliver.ReloadInterval = 5 * time.Second
	for _, m := range mods {
		m(cfg)
	}
	h := &harness{t: t, cfg: cfg, root: cfg.Model.Roots[0]}

	h.prod = kafkatest.Client(t, s.kafka)
	if err := avro.CreateSchemaTopic(ctx, h.prod, cfg.Kafka.TopicPrefix+"schemas", -1); err != nil {
		t.Fatal(err)
	}
	createTopic(t, h.prod, cfg.Kafka.SnapshotTopic(h.root), 3)
	h.reg = avro.NewTopicRegistry(h.prod, cfg.Kafka.TopicPrefix+"schemas")
	schema, err := avro.ParseSchema(avro.SnapshotSchema())
	if err != nil {
		t.Fatal(err)
	}
	if h.prefix, err = h.reg.Prefix(ctx, cfg.Kafka.SnapshotTopic(h.root), schema); err != nil {
		t.Fatal(err)
	}

	if h.admin, err = webhook.OpenAdmin(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.admin.Close)
	if h.app, err = h.admin.RegisterApp(ctx, "app-"+hex.EncodeToString(b[:])); err != nil {
		t.Fatal(err)
	}
	return h
}

func createTopic(t testing.TB, cl *kgo.Client, name string, partitions int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := newAdm(cl).create(ctx, name, partitions); err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
}

// sub creates a subscription of the harness's app.
func (h *harness) sub(tenant, event, url string, mod ...func(*webhook.SubscribeRequest)) *webhook.Subscription {
	h.t.Helper()
	r := webhook.SubscribeRequest{AppID: h.app.ID, Tenant: tenant, Event: event, URL: url}
	for _, m := range mod {
		m(&r)
	}
	s, err := h.admin.Subscribe(h.t.Context(), r)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

// setPath points sub at its receiver's /<uuid> so the receiver knows which subscription a
// request was for.
func (h *harness) setPath(sub *webhook.Subscription) *webhook.Subscription {
	h.t.Helper()
	conn, err := pgx.Connect(h.t.Context(), h.cfg.Postgres.URL)
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close(h.t.Context())
	url := strings.TrimSuffix(sub.URL, "/") + "/" + sub.UUID
	if _, err := conn.Exec(h.t.Context(), `UPDATE hook.subscription SET url = $1 WHERE uuid::text = $2`, url, sub.UUID); err != nil {
		h.t.Fatal(err)
	}
	c := *sub
	c.URL = url
	return &c
}

// snap is an incident_instance_updated snapshot of root key for tenant. Its commit LSN is 0
// (unknown: matched by the subscriptions' state when read) until produce gives it the current
// WAL position.
func snap(key, tenant string, version int64) avro.Snapshot {
	return avro.Snapshot{RootType: "incident.instance", EventPrefix: "incident.instance", Key: key, Tenant: tenant,
		EventType: "incident_instance_updated", Verb: avro.VerbUpdated, Version: version, CommitLSN: 0,
		CommitTime: time.Now(), Payload: fmt.Appendf(nil, `{"id": %s, "version": %d, "status": "RESOLVED"}`, key, version)}
}

// produce writes snaps to the snapshot topic as bubble-up would. A synthetic commit LSN (below
// any real one) is replaced by PostgreSQL's current WAL position: these snapshots stand for
// transactions committed now, after every subscription created so far.
func (h *harness) produce(snaps ...avro.Snapshot) {
	h.t.Helper()
	recs := make([]*kgo.Record, len(snaps))
	now := h.walLSN()
	for i, s := range snaps {
		if s.CommitLSN < 1<<20 {
			s.CommitLSN = now
		}
		recs[i] = &kgo.Record{Topic: h.cfg.Kafka.SnapshotTopic(h.root), Key: []byte(s.Key),
			Value: avro.AppendSnapshot(append([]byte(nil), h.prefix...), s),
			Headers: []kgo.RecordHeader{{Key: "walhook-event-type", Value: []byte(s.EventType)},
				{Key: "walhook-version", Value: fmt.Appendf(nil, "%d", s.Version)},
				{Key: "walhook-tenant", Value: []byte(s.Tenant)}}}
	}
	if err := h.prod.ProduceSync(h.t.Context(), recs...).FirstErr(); err != nil {
		h.t.Fatal(err)
	}
}

// walLSN is the current WAL position of the harness's PostgreSQL.
func (h *harness) walLSN() uint64 {
	h.t.Helper()
	conn, err := pgx.Connect(h.t.Context(), h.cfg.Postgres.URL)
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close(h.t.Context())
	var lsn uint64
	if err := conn.QueryRow(h.t.Context(), `SELECT (pg_current_wal_lsn() - '0/0')::bigint`).Scan(&lsn); err != nil {
		h.t.Fatal(err)
	}
	return lsn
}

// run starts a sink until the returned stop is called (or the test ends).
func (h *harness) run(opts ...webhook.Option) (stop func()) {
	h.t.Helper()
	opts = append([]webhook.Option{webhook.WithLogger(zaptest.NewLogger(h.t, zaptest.Level(zap.WarnLevel))),
		webhook.WithKafkaOpts(kgo.FetchMaxWait(100 * time.Millisecond))}, opts...)
	s, err := webhook.New(h.cfg, opts...)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				h.t.Errorf("sink Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			h.t.Errorf("sink Run did not return within 30s of cancel")
		}
	}
	h.t.Cleanup(stop)
	return stop
}

func (h *harness) attempts(sub string) []webhook.Attempt {
	h.t.Helper()
	a, err := webhook.Attempts(h.t.Context(), h.cfg.Kafka, sub)
	if err != nil {
		h.t.Fatal(err)
	}
	return a
}

func eventually(t testing.TB, fn func() error) { kafkatest.Eventually(t, 20*time.Second, fn) }
