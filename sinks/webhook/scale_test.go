package webhook_test

import (
	"fmt"
	"sort"
	"testing"
	"time"

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
