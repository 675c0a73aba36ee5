package webhook_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/walhook/walhook/sinks/webhook"
	"github.com/walhook/walhook/sinks/webhook/webhooktest"
)

func TestSink(t *testing.T) {
	s := startServers(t)
	t.Run("SignedDelivery", func(t *testing.T) { testSignedDelivery(t, s) })
	t.Run("Outcomes", func(t *testing.T) { testOutcomes(t, s) })
}

func verify(t testing.TB, secret string, r webhooktest.Request) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(r.Body, r.Header); err != nil {
		t.Fatalf("signature %q does not verify: %v", r.Header.Get("webhook-signature"), err)
	}
}

func testSignedDelivery(t *testing.T, s *servers) {
	h := newHarness(t, s)
	rcv := webhooktest.Start(t)
	bare := h.sub("acme", "incident.instance.updated", rcv.URL()+"/bare", func(r *webhook.SubscribeRequest) {
		r.Headers = map[string]string{"X-Team": "blue"}
	})
	env := h.sub("acme", "incident_instance_updated", rcv.URL()+"/env", func(r *webhook.SubscribeRequest) {
		r.Format, r.Method = "envelope", "PUT"
	})
	if !strings.HasPrefix(bare.Secret, "whsec_") {
		t.Fatalf("secret %q is not whsec_", bare.Secret)
	}
	h.run()
	s1 := snap("134", "acme", 1)
	h.produce(s1, snap("134", "other-tenant", 1))
	eventually(t, func() error {
		if n := rcv.Count(); n < 2 {
			return fmt.Errorf("%d requests", n)
		}
		return nil
	})
	for _, r := range rcv.Requests() {
		switch r.Path {
		case "/bare":
			verify(t, bare.Secret, r)
			if string(r.Body) != string(s1.Payload) {
				t.Errorf("bare body %s, want %s", r.Body, s1.Payload)
			}
			if r.Header.Get("X-Team") != "blue" || r.Method != http.MethodPost {
				t.Errorf("bare request: method %s headers %v", r.Method, r.Header)
			}
			if got, want := r.Header.Get("webhook-id"), webhook.MessageID(bare.UUID, "incident.instance", "134", 1); got != want {
				t.Errorf("webhook-id %s, want %s", got, want)
			}
		case "/env":
			verify(t, env.Secret, r)
			var e struct {
				EventType string          `json:"event_type"`
				Payload   json.RawMessage `json:"payload"`
				Meta      struct {
					Version int    `json:"version"`
					SentAt  string `json:"sent_at"`
				} `json:"meta"`
			}
			if err := json.Unmarshal(r.Body, &e); err != nil {
				t.Fatalf("envelope %s: %v", r.Body, err)
			}
			if _, err := time.Parse("2006-01-02T15:04:05.000Z", e.Meta.SentAt); err != nil || e.EventType != "incident_instance_updated" ||
				e.Meta.Version != 1 || string(e.Payload) != string(s1.Payload) || r.Method != http.MethodPut {
				t.Errorf("envelope %s (method %s)", r.Body, r.Method)
			}
		default:
			t.Errorf("unexpected request to %s", r.Path)
		}
		if r.Header.Get("walhook-event-type") != "incident_instance_updated" || r.Header.Get("walhook-version") != "1" ||
			!strings.HasPrefix(r.Header.Get("User-Agent"), "walhook/") {
			t.Errorf("headers %v", r.Header)
		}
	}

	// Rotation: both secrets sign during the grace period, and the running sink sees the new
	// secret through NOTIFY.
	newSecret, err := h.admin.RotateSecret(t.Context(), bare.UUID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// No wait: the snapshot's commit LSN follows the rotation's commit, and the sink matches it
	// only once its subscription index holds every change committed before that LSN.
	h.produce(snap("134", "acme", 2))
	eventually(t, func() error {
		if n := rcv.Count(); n < 4 {
			return fmt.Errorf("%d requests", n)
		}
		return nil
	})
	for _, r := range rcv.Requests()[2:] {
		if r.Path != "/bare" {
			continue
		}
		if sigs := strings.Fields(r.Header.Get("webhook-signature")); len(sigs) != 2 {
			t.Fatalf("after rotation: signature header %q, want two signatures", r.Header.Get("webhook-signature"))
		}
		verify(t, newSecret, r)
		verify(t, bare.Secret, r)
	}
	if err := h.admin.Unsubscribe(t.Context(), "00000000-0000-0000-0000-000000000000"); err == nil {
		t.Fatal("unsubscribe of an unknown uuid succeeded")
	}
}

func count(rcv *webhooktest.Receiver, n int) func() error {
	return func() error {
		if got := rcv.Count(); got < n {
			return fmt.Errorf("%d of %d requests", got, n)
		}
		return nil
	}
}

func outcomes(as []webhook.Attempt) string {
	var b []string
	for _, a := range as {
		b = append(b, fmt.Sprintf("%d:%s:%d", a.Attempt, a.Outcome, a.Status))
	}
	return strings.Join(b, " ")
}

func testOutcomes(t *testing.T, s *servers) {
	h := newHarness(t, s)
	flaky, limited, dead, gone, unsub := webhooktest.Start(t), webhooktest.Start(t), webhooktest.Start(t), webhooktest.Start(t), webhooktest.Start(t)
	flaky.Respond(func(n int, _ webhooktest.Request) webhooktest.Response {
		if n == 0 {
			return webhooktest.Response{Status: 500}
		}
		return webhooktest.Response{}
	})
	limited.Respond(func(n int, _ webhooktest.Request) webhooktest.Response {
		if n == 0 {
			return webhooktest.Response{Status: 429, Header: map[string]string{"Retry-After": "1"}}
		}
		return webhooktest.Response{}
	})
	dead.Always(webhooktest.Response{Status: 503})
	gone.Always(webhooktest.Response{Status: 410})
	subFlaky := h.sub("t-flaky", "incident.instance.updated", flaky.URL())
	subLimited := h.sub("t-limited", "incident.instance.updated", limited.URL())
	subDead := h.sub("t-dead", "incident.instance.updated", dead.URL())
	subGone := h.sub("t-gone", "incident.instance.updated", gone.URL())
	subUnsub := h.sub("t-unsub", "incident.instance.updated", unsub.URL())
	h.run()
	if err := h.admin.Unsubscribe(t.Context(), subUnsub.UUID); err != nil {
		t.Fatal(err)
	}
	// No wait: the snapshots commit after the unsubscribe, which the sink's index holds before it
	// matches them (the subscription lifetime by commit LSN).
	h.produce(snap("1", "t-flaky", 1), snap("2", "t-limited", 1), snap("3", "t-dead", 1), snap("4", "t-gone", 1), snap("5", "t-unsub", 1))

	// 500 then 200: retried through the retry topic with the same webhook-id.
	eventually(t, count(flaky, 2))
	r := flaky.Requests()
	if r[0].Header.Get("webhook-id") != r[1].Header.Get("webhook-id") {
		t.Errorf("webhook-id changed across retries: %s, %s", r[0].Header.Get("webhook-id"), r[1].Header.Get("webhook-id"))
	}
	verify(t, subFlaky.Secret, r[1])
	eventually(t, func() error {
		if got := outcomes(h.attempts(subFlaky.UUID)); got != "1:retry:500 2:delivered:200" {
			return fmt.Errorf("flaky attempts %q", got)
		}
		return nil
	})

	// 429 with Retry-After: 1 waits at least a second.
	eventually(t, count(limited, 2))
	r = limited.Requests()
	if gap := r[1].At.Sub(r[0].At); gap < 900*time.Millisecond {
		t.Errorf("retry after 429 with Retry-After 1 came %v later", gap)
	}
	_ = subLimited

	// 503 on every attempt: dead-lettered after 4 attempts; replay delivers it again.
	eventually(t, func() error {
		if got := outcomes(h.attempts(subDead.UUID)); got != "1:retry:503 2:retry:503 3:retry:503 4:dead_letter:503" {
			return fmt.Errorf("dead attempts %q", got)
		}
		return nil
	})
	dead.Always(webhooktest.Response{})
	n, err := webhook.Replay(t.Context(), h.prod, h.cfg.Kafka, subDead.UUID, time.Time{})
	if err != nil || n != 1 {
		t.Fatalf("replay: %d, %v", n, err)
	}
	eventually(t, count(dead, 5))
	verify(t, subDead.Secret, dead.Requests()[4])

	// 410 disables the subscription; the next delivery is a disabled target.
	eventually(t, func() error {
		sub, err := h.admin.Get(t.Context(), subGone.UUID)
		if err != nil || sub.Enabled || !strings.Contains(sub.DisabledReason, "410") {
			return fmt.Errorf("after 410: %+v, %v", sub, err)
		}
		return nil
	})
	h.produce(snap("4", "t-gone", 2))
	eventually(t, func() error {
		if got := outcomes(h.attempts(subGone.UUID)); got != "1:gone:410 1:disabled_target:0" {
			return fmt.Errorf("gone attempts %q", got)
		}
		return nil
	})

	// Unsubscribed: no request, a disabled-target attempt.
	eventually(t, func() error {
		if got := outcomes(h.attempts(subUnsub.UUID)); got != "1:disabled_target:0" {
			return fmt.Errorf("unsubscribed attempts %q", got)
		}
		return nil
	})
	if unsub.Count() != 0 || gone.Count() != 1 {
		t.Errorf("requests to disabled subscriptions: unsubscribed %d, gone %d (want 0, 1)", unsub.Count(), gone.Count())
	}
}
