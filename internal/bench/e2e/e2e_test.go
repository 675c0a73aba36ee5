package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/apachekafka"
	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/kafkatest"
	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/sinks/webhook"
)

// Knobs of the run; pass them after -args, e.g. -args -e2e.rate=500.
var (
	flagRate          = flag.Int("e2e.rate", 1000, "transactions per second the writer commits")
	flagWarmup        = flag.Duration("e2e.warmup", 5*time.Second, "paced writing before the measured window")
	flagDuration      = flag.Duration("e2e.duration", 20*time.Second, "the measured window")
	flagDrain         = flag.Duration("e2e.drain", 60*time.Second, "how long to wait after the window for its deliveries")
	flagConns         = flag.Int("e2e.conns", 8, "writer connections")
	flagIncidents     = flag.Int("e2e.incidents", 2000, "seeded incidents the writer updates at random")
	flagHeartbeat     = flag.Duration("e2e.heartbeat", 10*time.Millisecond, "cdc.heartbeat_interval")
	flagReadCommitted = flag.Bool("e2e.read-committed", false, "the sink's group client reads only committed snapshots")
	flagKafka         = flag.String("e2e.kafka", "", "the broker: kfake (in process), apache (one Apache Kafka node; needs Java 17+ and Maven); default: WALHOOK_TEST_KAFKA, else kfake")
	flagTap           = flag.Bool("e2e.tap", false, "also read the change and snapshot topics to split the latency by hop (costs CPU)")
)

// tenant is the tenant of every seeded row and of the receiver's subscriptions.
const tenant = "bench"

// BenchmarkCommitToWebhook measures commit-to-receipt latency at a steady transaction rate (use
// -benchtime=1x; b.N is ignored: the run is one fixed-duration experiment). See the package doc.
func BenchmarkCommitToWebhook(b *testing.B) {
	e := startBench(b, *flagConns)
	r := e.measure(b, *flagRate, *flagWarmup, *flagDuration)
	report(b, r)
	printStageMetrics(e.st.reg)
}

// bench is one pipeline under test with its receiver and writer, shared by a sweep's steps.
type bench struct {
	cfg   *config.Config
	st    *stages
	recv  *receiver
	w     *writer
	conns int
	tp    *tap
	probe *lagProbe
}

// startBench starts PostgreSQL, the broker and the stages, waits for the first delivery and
// opens the writer; everything stops with the benchmark.
func startBench(b *testing.B, conns int) *bench {
	pg, kafka := pgtest.Start(b), startKafka(b)
	dbURL := pgtest.NewDatabase(b, pg)
	ids := seed(b, dbURL, *flagIncidents)
	cfg := benchConfig(b, dbURL, kafka)
	recv, err := startReceiver()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(recv.close)
	subscribe(b, cfg, recv)

	var sinkOpts []webhook.Option
	if *flagReadCommitted {
		sinkOpts = append(sinkOpts, webhook.WithKafkaOpts(kgo.FetchIsolationLevel(kgo.ReadCommitted())))
	}
	e := &bench{cfg: cfg, recv: recv, conns: conns}
	e.st = startStages(b, cfg, sinkOpts...)
	ready := time.Now()
	waitFirstDelivery(b, e.st, dbURL, ids[0], recv)
	b.Logf("pipeline delivering %v after the stages started", time.Since(ready).Round(time.Millisecond))

	if *flagTap {
		if e.tp, err = startTap(cfg); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); e.tp.run(ctx) }()
		b.Cleanup(func() { cancel(); <-done })
	}
	if e.probe, err = startLagProbe(b.Context(), cfg); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.probe.close)
	if e.w, err = newWriter(b.Context(), dbURL, conns, ids); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.w.close)
	return e
}

// result is one run's figures.
type result struct {
	window    time.Duration
	committed int64
	behind    int64 // transactions the pacer dropped in the window: every writer connection was busy
	errs      int64 // writer errors in the window
	stmtP50   time.Duration
	stmtP99   time.Duration
	recv      stats
	missing   int64
	cpu       time.Duration // user+system CPU of this process (stages, writer, receiver) in the window
	load      string        // /proc/loadavg after the window: the machine is shared
	hops      []hop
	rate      int
	conns     int
	failed    map[string]float64 // the sink's attempts in the window that did not deliver, by outcome
	warmup    time.Duration
	lags      []stageLag
	lagErr    error
}

// measure writes at rate through the warm-up and the window, then waits for the window's
// deliveries: until all arrived, or none arrived for -e2e.drain.
func (e *bench) measure(b *testing.B, rate int, warmup, duration time.Duration) result {
	st, w, recv, tp := e.st, e.w, e.recv, e.tp
	recv.reset()
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan struct{})
	go func() { defer close(done); w.run(ctx, rate) }()
	stopWriter := func() { cancel(); <-done }
	defer stopWriter()

	st.sleep(b, warmup)
	from := time.Now().UnixMicro()
	cpu0 := cpuTime()
	recv.window(from, 0)
	if tp != nil {
		tp.window(from, 0)
	}
	lag0 := e.probe.sample(b.Context())
	behind0, errs0, fail0 := w.behind.Load(), w.errs.Load(), webhookFailures(st.reg)
	st.sleep(b, duration)
	to := time.Now().UnixMicro()
	cpu := cpuTime() - cpu0
	recv.window(from, to)
	if tp != nil {
		tp.window(from, to)
	}
	lag1 := e.probe.sample(b.Context())
	behind, errs := w.behind.Load()-behind0, w.errs.Load()-errs0
	failed := webhookFailures(st.reg)
	for k, v := range fail0 {
		failed[k] -= v
	}
	stopWriter()
	load, _ := os.ReadFile("/proc/loadavg")

	committed, stmt := w.window(from, to)
	last, lastAt := -1, time.Now()
	for n := recv.measured(); int64(n) < committed && time.Since(lastAt) < *flagDrain; n = recv.measured() {
		if n != last {
			last, lastAt = n, time.Now()
		}
		st.sleep(b, 50*time.Millisecond)
	}
	if err, _ := w.lastErr.Load().(error); err != nil {
		b.Logf("writer errors: %d, last: %v", w.errs.Load(), err)
	}
	r := result{window: time.Duration(to-from) * time.Microsecond, committed: committed, behind: behind,
		errs: errs, recv: recv.stats(), cpu: cpu, load: strings.TrimSpace(string(load)), rate: rate, conns: e.conns, warmup: warmup, failed: failed,
		lags: stageLags(lag0, lag1), lagErr: errors.Join(lag0.err, lag1.err)}
	if tp != nil {
		r.hops = tp.hops()
	}
	r.missing = committed - int64(r.recv.received)
	r.stmtP50, r.stmtP99 = quantile(stmt, .5), quantile(stmt, .99)
	return r
}

func report(b *testing.B, r result) {
	txs := float64(r.committed) / r.window.Seconds()
	b.ReportMetric(txs, "tx/s")
	b.ReportMetric(float64(r.recv.received), "deliveries")
	b.ReportMetric(float64(r.missing), "missing")
	for _, m := range []struct {
		unit string
		d    time.Duration
	}{{"p50_ms", r.recv.p50}, {"p90_ms", r.recv.p90}, {"p99_ms", r.recv.p99}, {"max_ms", r.recv.max}} {
		b.ReportMetric(float64(m.d.Microseconds())/1000, m.unit)
	}
	// The table goes to stdout: the testing package cuts a benchmark's log after ten lines.
	fmt.Printf("CommitToWebhook\n"+
		"  target            %d tx/s over %v after %v warm-up, %d writer connections, heartbeat %v, sink read_committed=%v\n"+
		"  achieved          %.1f tx/s (%d committed in the window, %d dropped by the pacer, %d errors)\n"+
		"  statement+commit  p50 %v  p99 %v (writer round trip)\n"+
		"  deliveries        %d of the window's (%d missing after the drain), %d duplicates, %d total, %d refused\n"+
		"  commit→receipt    p50 %v  p90 %v  p99 %v  p99.9 %v  max %v\n"+
		"  this process      %.2f cores over the window (stages, writer, receiver); loadavg %s\n",
		r.rate, r.window.Round(time.Second), r.warmup, r.conns, *flagHeartbeat, *flagReadCommitted,
		txs, r.committed, r.behind, r.errs,
		r.stmtP50.Round(time.Microsecond), r.stmtP99.Round(time.Microsecond),
		r.recv.received, r.missing, r.recv.dups, r.recv.total, r.recv.bad,
		ms(r.recv.p50), ms(r.recv.p90), ms(r.recv.p99), ms(r.recv.p999), ms(r.recv.max),
		r.cpu.Seconds()/r.window.Seconds(), r.load)
	for _, h := range r.hops {
		fmt.Printf("  %-38s n %-6d p50 %-8s p99 %-8s max %s\n", h.name, h.n, ms(h.p50), ms(h.p99), ms(h.max))
	}
	printLags(r)
	checkDeliveries(b, r)
}

// checkDeliveries fails the benchmark unless every transaction of the window was delivered
// exactly once with a valid signature.
func checkDeliveries(b *testing.B, r result) {
	if r.missing > 0 {
		b.Errorf("%d tx/s: %d transactions of the window were not delivered (none arrived for %v)", r.rate, r.missing, *flagDrain)
	}
	if r.recv.dups > 0 {
		b.Errorf("%d tx/s: %d transactions of the window were delivered more than once", r.rate, r.recv.dups)
	}
	if r.recv.bad > 0 {
		b.Errorf("%d tx/s: receiver refused %d deliveries, last: %v", r.rate, r.recv.bad, r.recv.lastErr)
	}
}

// cpuTime is the user+system CPU this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru) // cannot fail with RUSAGE_SELF
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

// benchConfig is `walhook dev`'s configuration over the test servers, with names unique to the
// run and the few knobs the benchmark needs.
func benchConfig(b *testing.B, dbURL string, kafka *kafkatest.Env) *config.Config {
	suffix := randomHex()
	base := &config.Config{
		Postgres:       config.Postgres{URL: dbURL, Slot: "e2e_" + suffix, Publication: "e2e_" + suffix},
		Kafka:          config.Kafka{Brokers: kafka.Brokers, TopicPrefix: "e2e" + suffix + "."},
		SchemaRegistry: config.SchemaRegistry{URL: kafka.RegistryURL},
		Log:            config.Log{Level: "warn", Format: "console"},
		// Until reference watermarks are prompt, a snapshot can wait for the next heartbeat.
		CDC: config.CDC{ManageReplicaIdentity: true, HeartbeatInterval: *flagHeartbeat},
		// The default endpoint rate (100/s) would cap one receiver far below the writer's rate.
		Deliver: config.Deliver{AllowLoopback: true, EndpointRate: 1e6, EndpointBurst: 1e6},
	}
	cfg, err := config.ParseWith([]byte(demo.ModelYAML), "internal/demo/model.yaml", config.Options{Base: base})
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

func randomHex() string {
	var r [4]byte
	_, _ = rand.Read(r[:]) // never fails
	return hex.EncodeToString(r[:])
}

// seed applies the demo schema and inserts n incidents of the bench tenant over 100 sessions,
// before CDC starts: the initial snapshot reads them and emits nothing.
func seed(b *testing.B, dbURL string, n int) []int64 {
	ctx := b.Context()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, demo.SchemaSQL); err != nil {
		b.Fatalf("demo schema: %v", err)
	}
	for _, q := range []string{
		`INSERT INTO session.instance (score, status, tenant_id) SELECT g, 'IN_PROGRESS', $1 FROM generate_series(1, 100) g`,
		`INSERT INTO incident.instance (name, status, severity, start_time, session_instance_id, tenant_id)
		 SELECT 'incident ' || g, 'TRIGGERED', 'LOW', now(), 10000 + g % 100, $1 FROM generate_series(1, $2::int) g`,
	} {
		args := []any{tenant, n}[:1+min(1, strings.Count(q, "$2"))]
		if _, err := conn.Exec(ctx, q, args...); err != nil {
			b.Fatalf("seed: %v", err)
		}
	}
	rows, _ := conn.Query(ctx, `SELECT id FROM incident.instance WHERE tenant_id = $1 ORDER BY id`, tenant)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		b.Fatalf("seeded ids: %v", err)
	}
	return ids
}

// subscribe points the bench tenant's created and updated events at the receiver.
func subscribe(b *testing.B, cfg *config.Config, recv *receiver) {
	ctx := b.Context()
	adm, err := webhook.OpenAdmin(ctx, cfg.Postgres.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer adm.Close()
	app, err := adm.RegisterApp(ctx, "e2e-bench")
	if err != nil {
		b.Fatal(err)
	}
	for _, event := range []string{"incident.instance.created", "incident.instance.updated"} {
		path := "/" + event
		sub, err := adm.Subscribe(ctx, webhook.SubscribeRequest{AppID: app.ID, Tenant: tenant, Event: event, URL: recv.url() + path})
		if err != nil {
			b.Fatal(err)
		}
		if err := recv.trust(path, sub.Secret); err != nil {
			b.Fatal(err)
		}
	}
}

// waitFirstDelivery updates one incident until a delivery arrives: the stages have joined their
// groups, snapshotted the seed and are delivering.
func waitFirstDelivery(b *testing.B, st *stages, dbURL string, id int64, recv *receiver) {
	conn, err := pgx.Connect(b.Context(), dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	deadline := time.Now().Add(2 * time.Minute)
	for recv.totalSeen() == 0 {
		if time.Now().After(deadline) {
			b.Fatalf("no delivery within 2 minutes of starting the stages")
		}
		if _, err := conn.Exec(b.Context(), `UPDATE incident.instance SET updated_at = now() WHERE id = $1`, id); err != nil {
			b.Fatal(err)
		}
		st.sleep(b, 250*time.Millisecond)
	}
}

// startKafka is the broker -e2e.kafka names; without it kafkatest.Start (WALHOOK_TEST_KAFKA).
func startKafka(b *testing.B) *kafkatest.Env {
	switch *flagKafka {
	case "":
		return kafkatest.Start(b)
	case "kfake":
		return kafkatest.Start(b, kafkatest.Embedded())
	case "apache":
		return kafkatest.EnvOf(b, kafkatest.StartApache(b, apachekafka.Options{}))
	default:
		b.Fatalf("-e2e.kafka %q: use kfake or apache", *flagKafka)
		return nil
	}
}
