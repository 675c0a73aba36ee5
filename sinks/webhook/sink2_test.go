package webhook_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/sinks/webhook"
	"github.com/walhook/walhook/sinks/webhook/webhooktest"
)

func TestSinkMore(t *testing.T) {
	s := startServers(t)
	t.Run("OrderedUnderRetries", func(t *testing.T) { testOrdered(t, s) })
	t.Run("AutoDisable", func(t *testing.T) { testAutoDisable(t, s) })
	t.Run("SSRF", func(t *testing.T) { testSSRF(t, s) })
	t.Run("TenantIsolation", func(t *testing.T) { testIsolation(t, s) })
	t.Run("RestartMidLoad", func(t *testing.T) { testRestart(t, s) })
}

type body struct {
	ID      int64 `json:"id"`
	Version int64 `json:"version"`
}

func parse(t testing.TB, r webhooktest.Request) body {
	var b body
	if err := json.Unmarshal(r.Body, &b); err != nil {
		t.Fatalf("body %s: %v", r.Body, err)
	}
	return b
}

func testOrdered(t *testing.T, s *servers) {
	h := newHarness(t, s)
	rcv := webhooktest.Start(t)
	var mu sync.Mutex
	fails := 0
	rcv.Respond(func(_ int, r webhooktest.Request) webhooktest.Response {
		b := parse(t, r)
		mu.Lock()
		defer mu.Unlock()
		if b.ID == 7 && b.Version == 2 && fails < 2 {
			fails++
			return webhooktest.Response{Status: 500}
		}
		return webhooktest.Response{}
	})
	h.sub("acme", "incident.instance.updated", rcv.URL(), func(r *webhook.SubscribeRequest) { r.Ordered = true })
	h.run()
	var snaps []avro.Snapshot
	for v := int64(1); v <= 5; v++ {
		snaps = append(snaps, snap("7", "acme", v), snap("8", "acme", v))
	}
	h.produce(snaps...)
	eventually(t, count(rcv, 12))
	var order7 []int64
	var v2ok time.Time
	var last8 time.Time
	for _, r := range rcv.Requests() {
		b := parse(t, r)
		switch b.ID {
		case 7:
			order7 = append(order7, b.Version)
			if b.Version == 2 {
				v2ok = r.At
			}
		case 8:
			last8 = r.At
		}
	}
	if got := fmt.Sprint(order7); got != "[1 2 2 2 3 4 5]" {
		t.Errorf("root 7 received versions %s, want [1 2 2 2 3 4 5] (v2 retried twice in place)", got)
	}
	if !last8.Before(v2ok) {
		t.Errorf("root 8 waited for root 7's retries: last 8 at %v, 7 v2 delivered at %v", last8, v2ok)
	}
}

func testAutoDisable(t *testing.T, s *servers) {
	h := newHarness(t, s, func(c *config.Config) {
		c.Deliver.AutoDisableAfter = 500 * time.Millisecond
		c.Deliver.RetrySchedule = []time.Duration{200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond,
			200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond}
	})
	rcv := webhooktest.Start(t)
	rcv.Always(webhooktest.Response{Status: 500})
	sub := h.sub("acme", "incident.instance.updated", rcv.URL())
	h.run()
	h.produce(snap("1", "acme", 1))
	eventually(t, func() error {
		got, err := h.admin.Get(t.Context(), sub.UUID)
		if err != nil || got.Enabled || !strings.HasPrefix(got.DisabledReason, "auto-disabled") {
			return fmt.Errorf("subscription %+v, %v", got, err)
		}
		return nil
	})
	if n := rcv.Count(); n >= 8 {
		t.Errorf("%d requests: auto-disable did not stop the retries early", n)
	}
}

func testSSRF(t *testing.T, s *servers) {
	h := newHarness(t, s, func(c *config.Config) { c.Deliver.AllowLoopback = false })
	rcv := webhooktest.StartTLS(t)
	port := rcv.URL()[strings.LastIndex(rcv.URL(), ":"):]
	// localhost passes the URL check (https, a name) and resolves to a loopback address: refused
	// when connecting.
	viaName := h.sub("acme", "incident.instance.updated", "https://localhost"+port+"/hook")
	plain := h.sub("acme", "incident.instance.updated", "http://127.0.0.1"+port+"/hook")
	h.run()
	h.produce(snap("1", "acme", 1))
	for _, c := range []struct {
		sub  *webhook.Subscription
		want string
	}{{viaName, "loopback"}, {plain, "not HTTPS"}} {
		eventually(t, func() error {
			as := h.attempts(c.sub.UUID)
			if len(as) != 1 || as[0].Outcome != webhook.OutcomeDeadLetter || !strings.Contains(as[0].Error, c.want) {
				return fmt.Errorf("attempts of %s: %+v", c.sub.URL, as)
			}
			return nil
		})
	}
	if n := rcv.Count(); n != 0 {
		t.Fatalf("refused target got %d requests", n)
	}
}

// expectation tracks which (subscription, key, version) deliveries must arrive, and checks
// every request against the subscription it was sent to.
type expectation struct {
	t    testing.TB
	subs map[string]*webhook.Subscription // by uuid (the request path)
	want map[string]bool                  // "uuid|key|version"
}

func (e *expectation) check(rcv *webhooktest.Receiver) error {
	got := map[string]bool{}
	for _, r := range rcv.Requests() {
		uuid := strings.TrimPrefix(r.Path, "/")
		sub := e.subs[uuid]
		if sub == nil {
			e.t.Fatalf("request to unknown path %s", r.Path)
		}
		verify(e.t, sub.Secret, r)
		b := parse(e.t, r)
		k := fmt.Sprintf("%s|%d|%d", uuid, b.ID, b.Version)
		if !e.want[k] {
			e.t.Fatalf("subscription %s (tenant %s, %s) received key %d version %d, which is not its tenant's or event's",
				uuid, sub.Tenant, sub.EventType, b.ID, b.Version)
		}
		got[k] = true
	}
	if len(got) < len(e.want) {
		return fmt.Errorf("%d of %d deliveries", len(got), len(e.want))
	}
	return nil
}

// randomMix subscribes a random set of tenants and event types to rcv and produces n
// snapshots of random tenants and event types; it returns what must arrive.
func randomMix(t testing.TB, h *harness, rcv *webhooktest.Receiver, n int) *expectation {
	seed := uint64(time.Now().UnixNano())
	t.Logf("random mix seed %d", seed)
	e, snaps := planMix(t, h, rcv, n, seed)
	h.produce(snaps...)
	return e
}

// planMix is randomMix without the produce: the subscriptions are made, the snapshots
// returned in production order.
func planMix(t testing.TB, h *harness, rcv *webhooktest.Receiver, n int, seed uint64) (*expectation, []avro.Snapshot) {
	rng := rand.New(rand.NewPCG(seed, 1))
	tenants := []string{"t1", "t2", "t3", "t4", "t5"}
	events := []string{"incident_instance_created", "incident_instance_updated"}
	e := &expectation{t: t, subs: map[string]*webhook.Subscription{}, want: map[string]bool{}}
	for _, tn := range tenants[:4] { // t5 has no subscription
		for range rng.IntN(3) + 1 {
			sub := h.sub(tn, events[rng.IntN(2)], rcv.URL())
			sub = h.setPath(sub)
			e.subs[sub.UUID] = sub
		}
	}
	versions := map[string]int64{}
	var snaps []avro.Snapshot
	for range n {
		key := fmt.Sprint(rng.IntN(50) + 1)
		tn := tenants[(len(key)+int(key[0]))%len(tenants)] // a root belongs to one tenant
		versions[key]++
		sn := snap(key, tn, versions[key])
		if rng.IntN(2) == 0 {
			sn.EventType, sn.Verb = events[0], avro.VerbCreated
		}
		snaps = append(snaps, sn)
		for _, sub := range e.subs {
			if sub.Tenant == sn.Tenant && sub.EventType == sn.EventType {
				e.want[fmt.Sprintf("%s|%s|%d", sub.UUID, key, sn.Version)] = true
			}
		}
	}
	return e, snaps
}

func testIsolation(t *testing.T, s *servers) {
	h := newHarness(t, s)
	rcv := webhooktest.Start(t)
	e := randomMix(t, h, rcv, 300)
	h.run()
	eventually(t, func() error { return e.check(rcv) })
}

// testRestart stops the sink mid-load (cancel, as a crash would: in-flight deliveries are
// abandoned and the next sink of the group redoes everything past the committed watermark) and
// checks that every delivery still arrives.
func testRestart(t *testing.T, s *servers) {
	h := newHarness(t, s)
	rcv := webhooktest.Start(t)
	rcv.Always(webhooktest.Response{Delay: 5 * time.Millisecond})
	e := randomMix(t, h, rcv, 400)
	stop := h.run()
	eventually(t, func() error {
		if rcv.Count() < len(e.want)/4 {
			return fmt.Errorf("%d requests", rcv.Count())
		}
		return nil
	})
	stop()
	before := rcv.Count()
	if before >= len(e.want) {
		t.Logf("all %d deliveries arrived before the stop; the restart checks nothing new", before)
	}
	rcv.Always(webhooktest.Response{})
	h.run()
	eventually(t, func() error { return e.check(rcv) })
	t.Logf("%d deliveries expected, %d requests before the stop, %d in all", len(e.want), before, rcv.Count())
}
