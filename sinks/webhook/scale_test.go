package webhook_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/kafkatest"
	"github.com/walhook/walhook/sinks/webhook"
	"github.com/walhook/walhook/sinks/webhook/webhooktest"
)

// TestSinkScale covers delivery under load: backpressure instead of retries, attempts counted
// only for requests, fairness between tenants on one host, cheap health marks, exact
// subscription lifetime, and released idle endpoints.
func TestSinkScale(t *testing.T) {
	s := startServers(t)
	t.Run("BackpressureNoWastedAttempts", func(t *testing.T) { testBackpressure(t, s) })
	t.Run("DeadEndpointUsesEveryAttempt", func(t *testing.T) { testDeadEndpointAttempts(t, s) })
	t.Run("SlowTenantDoesNotStarveOthers", func(t *testing.T) { testTenantFairness(t, s) })
	t.Run("ConcurrencyAdapts", func(t *testing.T) { testAdaptiveConcurrency(t, s) })
	t.Run("RetryAfterPausesHost", func(t *testing.T) { testRetryAfterPausesHost(t, s) })
	t.Run("SubscriptionLifetimeExact", func(t *testing.T) { testSubscriptionLifetime(t, s, config.LifetimeCommitLSN) })
	t.Run("EarlierLifetimeReadLate", func(t *testing.T) { testEarlierLifetimeReadLate(t, s) })
	t.Run("HealthWrittenOnTransitionsBatched", func(t *testing.T) { testHealthWrites(t, s) })
	t.Run("IdleEndpointsReleased", func(t *testing.T) { testIdleEndpoints(t, s) })
	t.Run("ForeignCommitLSNsDoNotStall", func(t *testing.T) { testForeignLSNs(t, s) })
	t.Run("SlowTenantBacklogDoesNotStallPartitions", func(t *testing.T) { testSlowTenantBacklog(t, s) })
}

// deadLetters reads the dead-letter topic.
func (h *harness) deadLetters() []webhook.DeadLetter {
	h.t.Helper()
	var out []webhook.DeadLetter
	if err := webhook.ReadDeadLetters(h.t.Context(), h.cfg.Kafka, func(d webhook.DeadLetter) error {
		out = append(out, d)
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	return out
}

// requestsByID counts the receiver's requests per webhook-id.
func requestsByID(rcv *webhooktest.Receiver) map[string]int {
	n := map[string]int{}
	for _, r := range rcv.Requests() {
		n[r.Header.Get("webhook-id")]++
	}
	return n
}

// testBackpressure sends a burst forty times the endpoint's queue to a slow receiver with two
// requests in flight: the burst must wait (the partitions pause) rather than be pushed to the
// retry topics, so every delivery arrives once, the attempt log has exactly one record per
// request and nothing is dead-lettered.
func testBackpressure(t *testing.T, s *servers) {
	const burst = 400
	h := newHarness(t, s, func(c *config.Config) {
		c.Deliver.EndpointQueue = 10
		c.Deliver.MaxPending = 40
		c.Deliver.EndpointConcurrency = 2
		c.Deliver.RetrySchedule = []time.Duration{time.Second} // 2 attempts: a deferral would soon dead-letter
	})
	rcv := webhooktest.Start(t)
	rcv.Always(webhooktest.Response{Delay: 3 * time.Millisecond})
	sub := h.sub("acme", "incident.instance.updated", rcv.URL())
	h.run()
	batch := snapsFor("acme", burst)
	h.produce(batch...)
	kafkatest.Eventually(t, 90*time.Second, func() error {
		if n := len(requestsByID(rcv)); n < burst {
			return fmt.Errorf("%d of %d deliveries arrived", n, burst)
		}
		return nil
	})
	byID := requestsByID(rcv)
	for _, sn := range batch {
		id := webhook.MessageID(sub.UUID, sn.RootType, sn.Key, sn.Version)
		if byID[id] != 1 {
			t.Errorf("delivery %s (key %s) arrived %d times, want once (the receiver always answers 200)", id, sn.Key, byID[id])
		}
	}
	requests := rcv.Count()
	kafkatest.Eventually(t, 20*time.Second, func() error {
		if n := len(h.attempts(sub.UUID)); n != requests {
			return fmt.Errorf("attempt log has %d records for %d requests", n, requests)
		}
		return nil
	})
	for _, a := range h.attempts(sub.UUID) {
		if a.Outcome != webhook.OutcomeDelivered || a.Attempt != 1 {
			t.Errorf("attempt %+v: want every delivery delivered at its first attempt", a)
		}
	}
	if dl := h.deadLetters(); len(dl) != 0 {
		t.Errorf("%d dead letters, want none: first %+v", len(dl), dl[0].Job)
	}
}

// testDeadEndpointAttempts: an endpoint that always fails opens its circuit again and again;
// deferrals while it is open must not use up attempts, so every dead letter was requested
// exactly the configured number of times, with attempt numbers 1..n in the attempt log.
func testDeadEndpointAttempts(t *testing.T, s *servers) {
	const events = 12
	h := newHarness(t, s, func(c *config.Config) {
		c.Deliver.RetrySchedule = []time.Duration{100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond}
		c.Deliver.CircuitFailures = 2
		c.Deliver.CircuitCooldown = 300 * time.Millisecond
	})
	maxAttempts := h.cfg.Deliver.MaxAttempts()
	rcv := webhooktest.Start(t)
	rcv.Always(webhooktest.Response{Status: 500})
	sub := h.sub("acme", "incident.instance.updated", rcv.URL())
	h.run()
	batch := snapsFor("acme", events)
	h.produce(batch...)
	kafkatest.Eventually(t, 90*time.Second, func() error {
		if n := len(h.deadLetters()); n < events {
			return fmt.Errorf("%d of %d dead letters", n, events)
		}
		return nil
	})
	byID := requestsByID(rcv)
	attempts := map[string][]int{}
	for _, a := range h.attempts(sub.UUID) {
		attempts[a.WebhookID] = append(attempts[a.WebhookID], a.Attempt)
	}
	for _, d := range h.deadLetters() {
		id := d.WebhookID()
		if byID[id] != maxAttempts {
			t.Errorf("dead letter %s: %d requests, want %d (deliver.retry_schedule + 1)", id, byID[id], maxAttempts)
		}
		got := attempts[id]
		sort.Ints(got)
		if fmt.Sprint(got) != fmt.Sprint(seq(maxAttempts)) {
			t.Errorf("dead letter %s: attempt log numbers %v, want %v", id, got, seq(maxAttempts))
		}
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// snapsFor is n snapshots of distinct roots of tenant.
func snapsFor(tenant string, n int) []avro.Snapshot {
	out := make([]avro.Snapshot, n)
	for i := range out {
		out[i] = snap(fmt.Sprint(1000+i), tenant, 1)
	}
	return out
}

// testTenantFairness: one tenant whose path on a shared receiver answers slowly, queued first,
// and four tenants on the same host with fast paths. The fast tenants' deliveries must not wait
// behind the slow tenant's backlog: they all arrive while most of the slow tenant's are still
// pending, and the slow tenant's arrive too.
func testTenantFairness(t *testing.T, s *servers) {
	const slowEvents, fastEvents, fastTenants = 40, 50, 4
	h := newHarness(t, s, func(c *config.Config) { c.Deliver.EndpointConcurrency = 4 })
	rcv := webhooktest.Start(t)
	rcv.Respond(func(_ int, r webhooktest.Request) webhooktest.Response {
		if strings.HasPrefix(r.Path, "/slow") {
			return webhooktest.Response{Delay: 500 * time.Millisecond}
		}
		return webhooktest.Response{}
	})
	h.sub("slowco", "incident.instance.updated", rcv.URL()+"/slow")
	var batch []avro.Snapshot
	batch = append(batch, snapsFor("slowco", slowEvents)...)
	for i := range fastTenants {
		tenant := fmt.Sprintf("fast%d", i)
		h.sub(tenant, "incident.instance.updated", rcv.URL()+"/fast")
		batch = append(batch, snapsFor(tenant, fastEvents)...)
	}
	h.produce(batch...) // the slow tenant's first: a FIFO per host would serve it first
	h.run()
	if slow := slowRequestsWhenFastDone(t, rcv, fastTenants*fastEvents); slow > slowEvents/2 {
		t.Errorf("the fast tenants finished only after %d of the slow tenant's %d deliveries had been requested: they waited behind it",
			slow, slowEvents)
	}
	kafkatest.Eventually(t, 60*time.Second, func() error {
		if slow, _ := slowAndFast(rcv); slow < slowEvents {
			return fmt.Errorf("%d of %d slow tenant's deliveries", slow, slowEvents)
		}
		return nil
	})
}

// testAdaptiveConcurrency: against a receiver that keeps a steady 20 ms latency whatever the
// load, the sink's concurrency grows from its start (a quarter of deliver.endpoint_concurrency)
// and never exceeds deliver.endpoint_concurrency.
func testAdaptiveConcurrency(t *testing.T, s *servers) {
	const events, maxConc = 1500, 16
	var inflight, peak atomic.Int32
	var served atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(20 * time.Millisecond) // the receiver's latency, independent of load
		served.Add(1)
	}))
	t.Cleanup(srv.Close)
	h := newHarness(t, s, func(c *config.Config) { c.Deliver.EndpointConcurrency = maxConc })
	h.sub("acme", "incident.instance.updated", srv.URL)
	h.produce(snapsFor("acme", events)...)
	h.run()
	kafkatest.Eventually(t, 90*time.Second, func() error {
		if n := served.Load(); n < events {
			return fmt.Errorf("%d of %d served", n, events)
		}
		return nil
	})
	if p := peak.Load(); p <= maxConc/4 || p > maxConc {
		t.Errorf("peak concurrency %d: want it to grow above the start (%d) and stay at most %d", p, maxConc/4, maxConc)
	}
}

// testRetryAfterPausesHost: a 429 with Retry-After: 2 pauses every request to that host for 2 s,
// not only the retry of the delivery that got it.
func testRetryAfterPausesHost(t *testing.T, s *servers) {
	h := newHarness(t, s, func(c *config.Config) { c.Deliver.EndpointConcurrency = 1 })
	rcv := webhooktest.Start(t)
	rcv.Respond(func(n int, _ webhooktest.Request) webhooktest.Response {
		if n == 0 {
			return webhooktest.Response{Status: http.StatusTooManyRequests, Header: map[string]string{"Retry-After": "2"}}
		}
		return webhooktest.Response{}
	})
	h.sub("acme", "incident.instance.updated", rcv.URL())
	h.produce(snapsFor("acme", 5)...)
	h.run()
	kafkatest.Eventually(t, 30*time.Second, func() error {
		if n := rcv.Count(); n < 6 {
			return fmt.Errorf("%d requests, want 6 (one 429 and its retry)", n)
		}
		return nil
	})
	reqs := rcv.Requests()
	if gap := reqs[1].At.Sub(reqs[0].At); gap < 2*time.Second {
		t.Errorf("next request %s after the 429 with Retry-After: 2; the host was not paused", gap)
	}
}

// drained waits until the sink's group has committed the end of every snapshot partition:
// every snapshot produced so far is finished (delivered or logged as not delivered).
func (h *harness) drained(within time.Duration) {
	h.t.Helper()
	a := kadm.NewClient(h.prod)
	topic := h.cfg.Kafka.SnapshotTopic(h.root)
	kafkatest.Eventually(h.t, within, func() error {
		ends, err := a.ListEndOffsets(h.t.Context(), topic)
		if err != nil {
			return err
		}
		committed, err := a.FetchOffsets(h.t.Context(), h.cfg.WebhookGroup())
		if err != nil {
			return err
		}
		var lag []string
		ends.Each(func(o kadm.ListedOffset) {
			c, ok := committed.Lookup(topic, o.Partition)
			if o.Offset > 0 && (!ok || c.At < o.Offset) {
				lag = append(lag, fmt.Sprintf("p%d at %d of %d", o.Partition, c.At, o.Offset))
			}
		})
		if len(lag) > 0 {
			return fmt.Errorf("sink not drained: %v", lag)
		}
		return nil
	})
}

// testSubscriptionLifetime creates, disables and re-enables subscriptions while a steady
// stream of snapshots flows through a running sink, each snapshot carrying the WAL position at
// its production as its commit LSN. Every subscription must receive exactly the snapshots
// committed while it was enabled: none missed because the sink learned of a creation late, none
// after a disable, however the sink's NOTIFY handling and the stream interleave.
func testSubscriptionLifetime(t *testing.T, s *servers, mode string) {
	const steps = 80
	h := newHarness(t, s, func(c *config.Config) { c.Deliver.SubscriptionLifetime = mode })
	rcv := webhooktest.Start(t)
	subs := map[string]*webhook.Subscription{}
	create := func(name string) { subs[name] = h.sub("acme", "incident.instance.updated", rcv.URL()+"/"+name) }
	disable := func(name string) {
		if err := h.admin.Unsubscribe(t.Context(), subs[name].UUID); err != nil {
			t.Fatal(err)
		}
	}
	enable := func(name string) {
		if _, err := h.admin.Enable(t.Context(), subs[name].UUID); err != nil {
			t.Fatal(err)
		}
	}
	ops := map[int][]func(){
		10: {func() { create("B") }},
		20: {func() { disable("A") }},
		30: {func() { create("C") }},
		40: {func() { create("D") }},
		41: {func() { disable("D") }},
		50: {func() { disable("C") }},
		70: {func() { enable("A") }},
	}
	want := map[string]map[string]bool{}
	expect := func(name string, from, to int) {
		if want[name] == nil {
			want[name] = map[string]bool{}
		}
		for i := from; i < to; i++ {
			want[name][fmt.Sprint(i)] = true
		}
	}
	expect("A", 0, 20)
	expect("A", 70, steps)
	expect("B", 10, steps)
	expect("C", 30, 50)
	expect("D", 40, 41)

	create("A")
	h.run()
	for i := range steps {
		for _, op := range ops[i] {
			op()
		}
		h.produce(snap(fmt.Sprint(i), "acme", 1))
	}
	h.drained(60 * time.Second)

	got := map[string]map[string]bool{}
	for _, r := range rcv.Requests() {
		name := strings.TrimPrefix(r.Path, "/")
		if got[name] == nil {
			got[name] = map[string]bool{}
		}
		got[name][fmt.Sprint(parse(t, r).ID)] = true
	}
	for name := range subs {
		var missing, extra []string
		for k := range want[name] {
			if !got[name][k] {
				missing = append(missing, k)
			}
		}
		for k := range got[name] {
			if !want[name][k] {
				extra = append(extra, k)
			}
		}
		sort.Strings(missing)
		sort.Strings(extra)
		if len(missing)+len(extra) > 0 {
			t.Errorf("subscription %s: missing snapshots %v, unexpected %v", name, missing, extra)
		}
	}
}

// testEarlierLifetimeReadLate: a subscription disabled and enabled twice before the sink reads
// any of the stream still gets exactly the versions of each of its lifetimes, the earlier ones
// included, and none committed while it was disabled.
func testEarlierLifetimeReadLate(t *testing.T, s *servers) {
	h := newHarness(t, s)
	rcv := webhooktest.Start(t)
	sub := h.sub("acme", "incident.instance.updated", rcv.URL())
	toggle := func(enable bool) {
		var err error
		if enable {
			_, err = h.admin.Enable(t.Context(), sub.UUID)
		} else {
			err = h.admin.Unsubscribe(t.Context(), sub.UUID)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]bool{}
	key := 0
	phase := func(enabled bool) {
		for range 5 {
			h.produce(snap(fmt.Sprint(key), "acme", 1))
			if enabled {
				want[fmt.Sprint(key)] = true
			}
			key++
		}
	}
	phase(true)
	toggle(false)
	phase(false)
	toggle(true)
	phase(true)
	toggle(false)
	phase(false)
	toggle(true)
	phase(true)
	h.run()
	h.drained(60 * time.Second)
	got := map[string]bool{}
	for _, r := range rcv.Requests() {
		got[fmt.Sprint(parse(t, r).ID)] = true
	}
	var missing, extra []string
	for k := range want {
		if !got[k] {
			missing = append(missing, k)
		}
	}
	for k := range got {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing)+len(extra) > 0 {
		t.Errorf("missing snapshots %v (want those of every lifetime), unexpected %v (committed while disabled)", missing, extra)
	}
}

// testHealthWrites: a receiver that fails every other request flips the subscription between
// failing and healthy at every request. The sink must not write each flip: hook.subscription is
// updated at most once per health flush (200 ms), counted by the subscription trigger's
// NOTIFYs, which fire on every updated row.
func testHealthWrites(t *testing.T, s *servers) {
	const events = 40
	h := newHarness(t, s)
	rcv := webhooktest.Start(t)
	rcv.Respond(func(n int, _ webhooktest.Request) webhooktest.Response {
		if n%2 == 0 {
			return webhooktest.Response{Status: http.StatusInternalServerError}
		}
		return webhooktest.Response{}
	})
	sub := h.sub("acme", "incident.instance.updated", rcv.URL())
	listen, err := pgx.Connect(t.Context(), h.cfg.Postgres.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer listen.Close(t.Context())
	if _, err := listen.Exec(t.Context(), "LISTEN "+webhook.NotifyChannel); err != nil {
		t.Fatal(err)
	}
	stop := h.run()
	h.produce(snapsFor("acme", events)...)
	kafkatest.Eventually(t, 60*time.Second, func() error {
		if n := rcv.Count(); n < events+events/2 {
			return fmt.Errorf("%d requests", n)
		}
		return nil
	})
	stop() // its health writer's last flush is done when Run returns
	reqs := rcv.Requests()
	elapsed := reqs[len(reqs)-1].At.Sub(reqs[0].At)

	// Notifications arrive in commit order: once our marker is read, every update's has been.
	if _, err := listen.Exec(t.Context(), "SELECT pg_notify($1, 'marker')", webhook.NotifyChannel); err != nil {
		t.Fatal(err)
	}
	updates := 0
	for {
		n, err := listen.WaitForNotification(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n.Payload == "marker" {
			break
		}
		if n.Payload == sub.UUID {
			updates++
		}
	}
	flips := len(reqs) - 1
	limit := int(elapsed/(200*time.Millisecond)) + 2
	t.Logf("%d requests (%d health flips) over %s: %d updates of the subscription", len(reqs), flips, elapsed, updates)
	if updates > limit {
		t.Errorf("%d updates of hook.subscription for %d health flips over %s; want at most one per 200 ms flush (%d)",
			updates, flips, elapsed, limit)
	}
}

// testIdleEndpoints: an endpoint with nothing pending for deliver.endpoint_idle_timeout is
// released, and its metric series with it; one still in use keeps them.
func testIdleEndpoints(t *testing.T, s *servers) {
	h := newHarness(t, s, func(c *config.Config) { c.Deliver.EndpointIdleTimeout = 300 * time.Millisecond })
	idle, busy := webhooktest.Start(t), webhooktest.Start(t)
	busy.Always(webhooktest.Response{Never: true}) // its delivery stays in flight
	h.sub("acme", "incident.instance.updated", idle.URL())
	h.sub("acme", "incident.instance.updated", busy.URL())
	reg := prometheus.NewRegistry()
	h.run(webhook.WithRegisterer(reg))
	h.produce(snap("1", "acme", 1))
	series := func(url string) bool {
		_, ok, err := sample(reg, "walhook_webhook_endpoint_concurrency", map[string]string{"endpoint": url})
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	kafkatest.Eventually(t, 20*time.Second, func() error {
		if idle.Count() != 1 || busy.Count() != 1 {
			return fmt.Errorf("requests: idle %d, busy %d", idle.Count(), busy.Count())
		}
		if !series(idle.URL()) {
			return fmt.Errorf("no series for %s while delivering", idle.URL())
		}
		return nil
	})
	kafkatest.Eventually(t, 20*time.Second, func() error {
		if series(idle.URL()) {
			return fmt.Errorf("idle endpoint %s still has its series", idle.URL())
		}
		return nil
	})
	if !series(busy.URL()) {
		t.Errorf("endpoint %s with a request in flight lost its series", busy.URL())
	}
}

// testForeignLSNs: snapshots whose commit LSNs lie beyond the hook database's WAL (their source
// is another PostgreSQL cluster: a misconfiguration, warned about) must still flow, matched by
// the subscriptions' state, without each waiting out the sync timeout (10 s).
func testForeignLSNs(t *testing.T, s *servers) {
	const events = 30
	h := newHarness(t, s)
	rcv := webhooktest.Start(t)
	h.sub("acme", "incident.instance.updated", rcv.URL())
	batch := snapsFor("acme", events)
	for i := range batch {
		batch[i].Key = "7" // one partition: one snapshot after the other
		batch[i].Version = int64(i + 1)
		batch[i].CommitLSN = 1<<60 + uint64(i)
	}
	h.run()
	h.produce(batch...)
	kafkatest.Eventually(t, 20*time.Second, func() error {
		if n := rcv.Count(); n < events {
			return fmt.Errorf("%d of %d snapshots with foreign commit LSNs delivered", n, events)
		}
		return nil
	})
}

// testSlowTenantBacklog: a slow tenant's backlog is many times the endpoint's queue. Queued, it
// would fill the queue and pause the partitions its fast neighbours share; instead its excess is
// deferred through a retry topic without using attempts. The fast tenants' deliveries arrive
// while most of the slow tenant's wait, every slow delivery arrives too, each at its first
// attempt, and nothing is dead-lettered.
func testSlowTenantBacklog(t *testing.T, s *servers) {
	const slowEvents, fastEvents, fastTenants = 150, 25, 4
	h := newHarness(t, s, func(c *config.Config) {
		c.Deliver.EndpointConcurrency = 4
		c.Deliver.EndpointQueue = 20
	})
	rcv := webhooktest.Start(t)
	rcv.Respond(func(_ int, r webhooktest.Request) webhooktest.Response {
		if strings.HasPrefix(r.Path, "/slow") {
			return webhooktest.Response{Delay: 100 * time.Millisecond}
		}
		return webhooktest.Response{}
	})
	slow := h.sub("slowco", "incident.instance.updated", rcv.URL()+"/slow")
	var batch []avro.Snapshot
	batch = append(batch, snapsFor("slowco", slowEvents)...)
	for i := range fastTenants {
		tenant := fmt.Sprintf("fast%d", i)
		h.sub(tenant, "incident.instance.updated", rcv.URL()+"/fast")
		batch = append(batch, snapsFor(tenant, fastEvents)...)
	}
	h.produce(batch...)
	h.run()
	if n := slowRequestsWhenFastDone(t, rcv, fastTenants*fastEvents); n > slowEvents/2 {
		t.Errorf("the fast tenants finished only after %d of the slow tenant's %d deliveries: its backlog held them up", n, slowEvents)
	}
	kafkatest.Eventually(t, 90*time.Second, func() error {
		if n := len(requestsByID(rcv)); n < slowEvents+fastTenants*fastEvents {
			return fmt.Errorf("%d of %d deliveries", n, slowEvents+fastTenants*fastEvents)
		}
		return nil
	})
	kafkatest.Eventually(t, 20*time.Second, func() error {
		n, _ := slowAndFast(rcv)
		if a := h.attempts(slow.UUID); len(a) != n {
			return fmt.Errorf("slow tenant: %d attempt records for %d requests", len(a), n)
		}
		return nil
	})
	for _, a := range h.attempts(slow.UUID) {
		if a.Attempt != 1 || a.Outcome != webhook.OutcomeDelivered {
			t.Errorf("slow tenant attempt %+v: want delivered at attempt 1 (deferrals use no attempt)", a)
		}
	}
	if dl := h.deadLetters(); len(dl) != 0 {
		t.Errorf("%d dead letters, want none", len(dl))
	}
}

// slowAndFast counts rcv's requests of the slow tenant (paths /slow…) and of the others.
func slowAndFast(rcv *webhooktest.Receiver) (slow, fast int) {
	for _, r := range rcv.Requests() {
		if strings.HasPrefix(r.Path, "/slow") {
			slow++
		} else {
			fast++
		}
	}
	return slow, fast
}

// slowRequestsWhenFastDone waits until rcv has fast requests (paths other than /slow…) and
// returns how many of the slow tenant's requests it had by then.
func slowRequestsWhenFastDone(t *testing.T, rcv *webhooktest.Receiver, fast int) int {
	t.Helper()
	kafkatest.Eventually(t, 60*time.Second, func() error {
		if _, n := slowAndFast(rcv); n < fast {
			return fmt.Errorf("%d of %d fast tenants' deliveries", n, fast)
		}
		return nil
	})
	slow, _ := slowAndFast(rcv)
	return slow
}
