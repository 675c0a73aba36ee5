package webhook_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/sinks/webhook"
)

// BenchmarkScale is the platform-scale benchmark (use -benchtime=1x; b.N is ignored). The sink
// runs in a child process (so its RSS and CPU are its own) with scaleSubs subscriptions over
// scaleTenants tenants (two per tenant), all on one receiver host and then spread over ten. For
// each layout it reports:
//   - startup_s: from the child's start to the delivery of a snapshot produced before it;
//   - change_ms: from a subscription's INSERT commit to the delivery of a snapshot committed
//     right after it (the worst of five);
//   - burst: scaleEvents snapshots produced at once (2 deliveries each), drained: deliveries/s
//     from the first request to the last, and the ratio to a bare http.Client with the same
//     per-host concurrency over the same receivers;
//   - p99 commit-to-receipt at a steady scaleSteadyRate snapshots/s;
//   - the child's RSS after start-up and at its peak, and its CPU seconds per 1,000 deliveries;
//   - the child's CPU (cores) while 50 subscriptions change per second.
//
// WALHOOK_BENCH_SCALE=small divides the sizes by 10 (a quick run).
func BenchmarkScale(b *testing.B) {
	subs, events := 100_000, 100_000
	if os.Getenv("WALHOOK_BENCH_SCALE") == "small" {
		subs, events = 10_000, 10_000
	}
	s := startServers(b)
	for _, hosts := range []int{1, 10} {
		b.Run(fmt.Sprintf("hosts=%d", hosts), func(b *testing.B) { benchScale(b, s, subs, events, hosts) })
	}
}

const (
	scaleRecvLatency = 2 * time.Millisecond // each receiver's answer time, whatever the load
	scaleSteadyRate  = 500                  // snapshots per second in the steady phase
	scaleSteadyFor   = 5 * time.Second
)

// scaleReceiver counts requests and records commit-to-receipt latencies (the snapshot payload
// carries its production time in "t").
type scaleReceiver struct {
	srv   *httptest.Server
	n     atomic.Int64
	mu    sync.Mutex
	first time.Time
	last  time.Time
	lat   []time.Duration
	watch map[string]chan time.Time // payload id → notified on receipt
}

func startScaleReceiver(b *testing.B) *scaleReceiver {
	r := &scaleReceiver{watch: map[string]chan time.Time{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(req.Body)
		now := time.Now()
		time.Sleep(scaleRecvLatency)
		body := buf.Bytes()
		r.n.Add(1)
		r.mu.Lock()
		if r.first.IsZero() {
			r.first = now
		}
		r.last = now
		if i := bytes.Index(body, []byte(`"t": `)); i >= 0 {
			if ns, err := strconv.ParseInt(string(bytes.TrimRight(body[i+5:], "} ")), 10, 64); err == nil {
				r.lat = append(r.lat, now.Sub(time.Unix(0, ns)))
			}
		}
		if i := bytes.Index(body, []byte(`"id": "`)); i >= 0 {
			id := string(body[i+7 : i+7+bytes.IndexByte(body[i+7:], '"')])
			if ch := r.watch[id]; ch != nil {
				delete(r.watch, id)
				ch <- now
			}
		}
		r.mu.Unlock()
	}))
	b.Cleanup(r.srv.Close)
	return r
}

func (r *scaleReceiver) reset() {
	r.mu.Lock()
	r.n.Store(0)
	r.first, r.last, r.lat = time.Time{}, time.Time{}, nil
	r.mu.Unlock()
}

func (r *scaleReceiver) await(id string) chan time.Time {
	ch := make(chan time.Time, 1)
	r.mu.Lock()
	r.watch[id] = ch
	r.mu.Unlock()
	return ch
}

// scalePayload is a snapshot payload with its production time.
func scalePayload(id string) []byte {
	return fmt.Appendf(nil, `{"id": "%s", "t": %d}`, id, time.Now().UnixNano())
}

func benchScale(b *testing.B, s *servers, nSubs, nEvents, nHosts int) {
	const concurrency = config.DefaultEndpointConcurrency
	h := newHarness(b, s, func(c *config.Config) {
		c.Kafka.Partitions = 6
		c.Deliver.RetrySchedule = nil // the defaults, as an operator would run it
		c.Deliver.RetryTiers = nil
		c.Deliver.CircuitFailures = 0
		c.Deliver.RequestTimeout = 0
		c.Deliver.ReloadInterval = 0
		c.Deliver.SetDefaults()
	})
	rcvs := make([]*scaleReceiver, nHosts)
	urls := make([]string, nHosts)
	for i := range rcvs {
		rcvs[i] = startScaleReceiver(b)
		urls[i] = rcvs[i].srv.URL
	}
	tenants := nSubs / 2
	conn, err := pgx.Connect(b.Context(), h.cfg.Postgres.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(b.Context())
	if _, err := conn.Exec(b.Context(), `INSERT INTO hook.subscription (application_id, tenant_id, event_type, url, secret)
		SELECT $1, 't' || (g % $2), 'incident_instance_updated', ($3::text[])[1 + g % $4] || '/' || g, $5
		FROM generate_series(0, $6 - 1) g`, h.app.ID, tenants, urls, nHosts, webhook.NewSecret(), nSubs); err != nil {
		b.Fatal(err)
	}

	// Start-up: a snapshot produced before the sink starts; the sink must load nSubs
	// subscriptions and join its group before delivering it.
	probe := func(id, tenant string) avro.Snapshot {
		sn := snap(id, tenant, 1)
		sn.Payload = scalePayload(id)
		return sn
	}
	got := rcvs[0].await("startup")
	h.produce(probe("startup", "t0"))
	started := time.Now()
	child := startChild(b, h.cfg, "scale")
	var startup time.Duration
	select {
	case at := <-got:
		startup = at.Sub(started)
	case <-time.After(3 * time.Minute):
		b.Fatal("no delivery within 3 minutes of the sink's start")
	}
	rssStart := procStatus(b, child.cmd.Process.Pid, "VmRSS")

	// Subscription change latency: INSERT a subscription of a new tenant, then a snapshot
	// committed after it; time from the INSERT's commit to the delivery.
	var change time.Duration
	for i := range 5 {
		tenant := fmt.Sprintf("new%d", i)
		id := "change" + strconv.Itoa(i)
		got := rcvs[0].await(id)
		if _, err := conn.Exec(b.Context(), `INSERT INTO hook.subscription (application_id, tenant_id, event_type, url, secret)
			VALUES ($1, $2, 'incident_instance_updated', $3, $4)`, h.app.ID, tenant, urls[0]+"/new", webhook.NewSecret()); err != nil {
			b.Fatal(err)
		}
		committed := time.Now()
		h.produce(probe(id, tenant))
		select {
		case at := <-got:
			change = max(change, at.Sub(committed))
		case <-time.After(time.Minute):
			b.Fatalf("the snapshot for new subscription %d was not delivered within a minute", i)
		}
	}

	// Burst.
	for _, r := range rcvs {
		r.reset()
	}
	cpu0 := procCPU(b, child.cmd.Process.Pid)
	snaps := make([]avro.Snapshot, nEvents)
	for i := range snaps {
		snaps[i] = probe(fmt.Sprint(i), "t"+strconv.Itoa(i%tenants))
	}
	h.produceMany(snaps)
	want := int64(2 * nEvents)
	deadline := time.Now().Add(15 * time.Minute)
	for total(rcvs) < want {
		if time.Now().After(deadline) {
			b.Fatalf("burst: %d of %d deliveries within 15 minutes", total(rcvs), want)
		}
		child.running(b)
		time.Sleep(20 * time.Millisecond)
	}
	cpu := procCPU(b, child.cmd.Process.Pid) - cpu0
	first, last := span(rcvs)
	rate := float64(want) / last.Sub(first).Seconds()
	burstP99 := p99(rcvs)

	// Steady rate.
	for _, r := range rcvs {
		r.reset()
	}
	steady := int(scaleSteadyRate * scaleSteadyFor / time.Second)
	tick := time.NewTicker(time.Second / scaleSteadyRate * 10)
	for i := 0; i < steady; i += 10 {
		<-tick.C
		batch := make([]avro.Snapshot, 10)
		for j := range batch {
			batch[j] = probe(fmt.Sprint(i+j), "t"+strconv.Itoa((i+j)*7919%tenants))
		}
		h.produceMany(batch)
	}
	tick.Stop()
	for total(rcvs) < int64(2*steady) {
		if time.Now().After(deadline) {
			b.Fatalf("steady: %d of %d deliveries", total(rcvs), 2*steady)
		}
		time.Sleep(20 * time.Millisecond)
	}
	steadyP99 := p99(rcvs)

	// Subscription churn: 50 changes a second for 5 s on an otherwise idle sink; the child's CPU.
	cpuChurn0, churnStart := procCPU(b, child.cmd.Process.Pid), time.Now()
	churn := time.NewTicker(time.Second / 50)
	for i := range 250 {
		<-churn.C
		if _, err := conn.Exec(b.Context(), `UPDATE hook.subscription SET updated_at = now() WHERE id = $1`,
			1+(i*7919)%nSubs); err != nil {
			b.Fatal(err)
		}
	}
	churn.Stop()
	churnCores := (procCPU(b, child.cmd.Process.Pid) - cpuChurn0) / time.Since(churnStart).Seconds()
	rssPeak := procStatus(b, child.cmd.Process.Pid, "VmHWM")
	_ = child.cmd.Process.Signal(syscall.SIGTERM) // a clean stop: a CPU profile gets written
	select {
	case <-child.exited:
	case <-time.After(30 * time.Second):
		child.kill()
	}

	bare := benchScaleBare(b, urls, int(want), concurrency)
	b.ReportMetric(startup.Seconds(), "startup_s")
	b.ReportMetric(float64(change.Milliseconds()), "change_ms")
	b.ReportMetric(rate, "deliveries/s")
	b.ReportMetric(bare, "bare_deliveries/s")
	b.ReportMetric(rate/bare, "sink/bare")
	b.ReportMetric(float64(burstP99.Milliseconds()), "burst_p99_ms")
	b.ReportMetric(float64(steadyP99.Milliseconds()), "steady_p99_ms")
	b.ReportMetric(rssStart/1024, "rss_start_MiB")
	b.ReportMetric(rssPeak/1024, "rss_peak_MiB")
	b.ReportMetric(cpu/float64(want)*1000, "cpu_s/1k_deliveries")
	b.ReportMetric(churnCores, "cores_at_50_changes/s")
	b.Logf("%d subscriptions over %d tenants on %d host(s): start-up %s, subscription change visible in %s; burst of %d events "+
		"(%d deliveries) at %.0f/s = %.2f of a bare client (%.0f/s), p99 commit-to-receipt %s; steady %d/s p99 %s; "+
		"RSS %.0f MiB after start-up, %.0f MiB peak; %.2f CPU-s per 1,000 deliveries; %.3f cores at 50 subscription changes/s",
		nSubs, tenants, nHosts, startup.Round(time.Millisecond), change.Round(time.Millisecond), nEvents, want, rate, rate/bare, bare,
		burstP99.Round(time.Millisecond), scaleSteadyRate, steadyP99.Round(time.Millisecond), rssStart/1024, rssPeak/1024,
		cpu/float64(want)*1000, churnCores)
}

func total(rcvs []*scaleReceiver) int64 {
	var n int64
	for _, r := range rcvs {
		n += r.n.Load()
	}
	return n
}

func span(rcvs []*scaleReceiver) (first, last time.Time) {
	for _, r := range rcvs {
		r.mu.Lock()
		if !r.first.IsZero() && (first.IsZero() || r.first.Before(first)) {
			first = r.first
		}
		if r.last.After(last) {
			last = r.last
		}
		r.mu.Unlock()
	}
	return first, last
}

func p99(rcvs []*scaleReceiver) time.Duration {
	var all []time.Duration
	for _, r := range rcvs {
		r.mu.Lock()
		all = append(all, r.lat...)
		r.mu.Unlock()
	}
	if len(all) == 0 {
		return 0
	}
	slices.Sort(all)
	return all[len(all)*99/100]
}

// benchScaleBare posts n requests to the receivers with a bare http.Client, round-robin, after
// a warm-up that opens the connections: the receivers' capacity as this machine sees it, for the
// same work the sink does per delivery and with the same concurrency budget. Each request is
// what the sink sends: the same payload, signed with Standard Webhooks (secret, webhook-id,
// timestamp and signature headers) and with the sink's other headers; up to perHost requests are
// in flight per receiver (the sink's deliver.endpoint_concurrency), so that on ten hosts the
// bare client may use ten times one host's concurrency, as the sink may.
func benchScaleBare(b *testing.B, urls []string, n, perHost int) float64 {
	wh, err := standardwebhooks.NewWebhook(webhook.NewSecret())
	if err != nil {
		b.Fatal(err)
	}
	cl := &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: perHost, MaxConnsPerHost: perHost}}
	defer cl.CloseIdleConnections()
	goroutines := len(urls) * perHost
	run := func(n int) time.Duration {
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for i := range goroutines {
			url := urls[i%len(urls)] + "/bare"
			wg.Go(func() {
				for k := next.Add(1); k <= int64(n); k = next.Add(1) {
					if err := scaleBareSend(cl, wh, url, k); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}
	run(2 * goroutines)
	return float64(n) / run(n).Seconds()
}

// scaleBareSend is one request of the bare client: what the sink sends for a delivery.
func scaleBareSend(cl *http.Client, wh *standardwebhooks.Webhook, url string, k int64) error {
	body := scalePayload(strconv.FormatInt(k, 10))
	id := webhook.MessageID("bare", "incident.instance", strconv.FormatInt(k, 10), 1)
	req, err := signedRequest(wh, url, id, body)
	if err != nil {
		return err
	}
	h := req.Header
	h.Set("User-Agent", "walhook-bench")
	h.Set(webhook.HeaderEventType, "incident_instance_updated")
	h.Set(webhook.HeaderVersion, "1")
	h.Set(webhook.HeaderAttempt, "1")
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// produceMany produces snaps asynchronously (a burst), with the current WAL position as their
// commit LSN.
func (h *harness) produceMany(snaps []avro.Snapshot) {
	h.t.Helper()
	lsn := h.walLSN()
	var wg sync.WaitGroup
	var failed atomic.Value
	for _, s := range snaps {
		s.CommitLSN = lsn
		rec := &kgo.Record{Topic: h.cfg.Kafka.SnapshotTopic(h.root), Key: []byte(s.Key),
			Value: avro.AppendSnapshot(append([]byte(nil), h.prefix...), s)}
		wg.Add(1)
		h.prod.Produce(context.Background(), rec, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Store(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		h.t.Fatal(err)
	}
}

// procStatus is a /proc/<pid>/status field in KiB.
func procStatus(b *testing.B, pid int, field string) float64 {
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// procCPU is the user+system CPU seconds of pid.
func procCPU(b *testing.B, pid int) float64 {
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}
