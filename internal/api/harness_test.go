package api_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/api"
	"github.com/walhook/walhook/internal/api/apitest"
	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/kafkatest"
	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/sinks/webhook"
	"github.com/walhook/walhook/sinks/webhook/webhooktest"
)

// env is a real stack around one API server: PostgreSQL with the demo schema, Kafka, a running
// webhook sink delivering to a real receiver, and the server on a loopback port.
type env struct {
	t        *testing.T
	cfg      *config.Config
	srv      *api.Server
	base     string
	doc      *apitest.OpenAPI
	recv     *webhooktest.Receiver
	prod     *kgo.Client
	reg      avro.Registry
	prefix   []byte
	operator string
	db       string
}

func newEnv(t *testing.T, mods ...func(*config.Config)) *env {
	t.Helper()
	ctx := t.Context()
	pg := pgtest.Start(t)
	kafka := kafkatest.Start(t)
	dbURL := pgtest.NewDatabase(t, pg)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, demo.SchemaSQL); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)

	var b [4]byte
	_, _ = rand.Read(b[:])
	cfg, err := config.ParseWith([]byte(demo.ModelYAML), "demo", config.Options{Base: &config.Config{
		Postgres: config.Postgres{URL: dbURL}, Kafka: config.Kafka{Brokers: kafka.Brokers}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Kafka.TopicPrefix = "a" + hex.EncodeToString(b[:]) + "."
	cfg.Kafka.Partitions = 2
	cfg.Deliver.AllowLoopback = true
	cfg.Deliver.RetrySchedule = []time.Duration{100 * time.Millisecond}
	cfg.Deliver.RetryTiers = []time.Duration{time.Second}
	cfg.Deliver.CircuitFailures = 100000
	cfg.Deliver.RequestTimeout = 2 * time.Second
	cfg.Deliver.ReloadInterval = 2 * time.Second
	cfg.API.RateLimit = 10000
	cfg.API.RateBurst = 10000
	for _, m := range mods {
		m(cfg)
	}
	e := &env{t: t, cfg: cfg, db: dbURL}
	e.prod = kafkatest.Client(t, kafka)
	if err := avro.CreateSchemaTopic(ctx, e.prod, cfg.Kafka.TopicPrefix+"schemas", -1); err != nil {
		t.Fatal(err)
	}
	root := cfg.Model.Roots[0]
	if _, err := kadm.NewClient(e.prod).CreateTopic(ctx, 2, -1, nil, cfg.Kafka.SnapshotTopic(root)); err != nil {
		t.Fatal(err)
	}
	e.reg = avro.NewTopicRegistry(e.prod, cfg.Kafka.TopicPrefix+"schemas")
	schema, _ := avro.ParseSchema(avro.SnapshotSchema())
	if e.prefix, err = e.reg.Prefix(ctx, cfg.Kafka.SnapshotTopic(root), schema); err != nil {
		t.Fatal(err)
	}
	e.recv = webhooktest.Start(t)
	e.runSink()

	if e.srv, err = api.New(ctx, cfg, api.WithLogger(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.srv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.base = "http://" + ln.Addr().String()
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(sctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	if e.doc, err = apitest.LoadOpenAPI(api.OpenAPI); err != nil {
		t.Fatal(err)
	}
	e.operator, _, err = e.srv.Keys().Create(ctx, "test-operator", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) runSink() {
	s, err := webhook.New(e.cfg, webhook.WithLogger(zaptest.NewLogger(e.t, zaptest.Level(zap.ErrorLevel))),
		webhook.WithKafkaOpts(kgo.FetchMaxWait(100*time.Millisecond)))
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				e.t.Errorf("sink: %v", err)
			}
		case <-time.After(30 * time.Second):
			e.t.Errorf("sink did not stop")
		}
	})
}

func (e *env) client(key string) *apitest.Client {
	return &apitest.Client{T: e.t, Base: e.base, Key: key, Doc: e.doc}
}

func (e *env) tenantToken(tenant string) string {
	e.t.Helper()
	k, _, err := e.srv.Keys().Create(e.t.Context(), tenant+"-portal", tenant, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return k
}

// produce writes incident snapshots of tenant, as bubble-up would.
func (e *env) produce(tenant, key string, version int64, verb avro.Verb) {
	e.t.Helper()
	et := "incident_instance_" + verb.String()
	s := avro.Snapshot{RootType: "incident.instance", EventPrefix: "incident.instance", Key: key, Tenant: tenant, EventType: et,
		Verb: verb, Version: version, CommitLSN: 0, CommitTime: time.Now(), // 0: matched by the subscriptions' state when read
		Payload: fmt.Appendf(nil, `{"id": %s, "version": %d, "tenant_marker": %q}`, key, version, tenant)}
	rec := &kgo.Record{Topic: e.cfg.Kafka.SnapshotTopic(e.cfg.Model.Roots[0]), Key: []byte(key),
		Value: avro.AppendSnapshot(append([]byte(nil), e.prefix...), s)}
	if err := e.prod.ProduceSync(e.t.Context(), rec).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
}

func eventually(t testing.TB, fn func() error) { kafkatest.Eventually(t, 30*time.Second, fn) }

type (
	webhooktestRequest  = webhooktest.Request
	webhooktestResponse = webhooktest.Response
)
