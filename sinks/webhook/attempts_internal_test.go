package webhook

import (
	"encoding/json"
	"testing"
	"time"
)

// TestAttemptJSON: the attempt-log record is written without reflection; it must be what
// encoding/json writes, byte for byte, for every kind of value (readers use encoding/json).
func TestAttemptJSON(t *testing.T) {
	at := time.Date(2026, 12, 2, 18, 4, 5, 123456789, time.UTC)
	for _, a := range []Attempt{
		{},
		{Subscription: "3f0c1a4e-8b2d-4c6f-9a1e-2b7d5c8e9f01", WebhookID: "msg_4lhmua4o7w5w2bp5h64clgbuiu", Attempt: 1, Time: at,
			Outcome: OutcomeDelivered, Status: 204, LatencyMS: 2.345, EventType: "incident_instance_updated", RootKey: "134",
			Version: 7, Tenant: "acme"},
		{Subscription: "s", Attempt: 12, Time: at.In(time.FixedZone("x", -5*3600)), Outcome: OutcomeRetry, Status: 503,
			LatencyMS: 30000, Error: `retryable: HTTP 503: "Service <Unavailable>" & more`, RootKey: "ké\x00\u2028y",
			Version: -1, NextAt: at.Add(time.Minute), ResponseBody: "{\"error\":\"busy\"}\n\xff\t"},
		{LatencyMS: 1e-7, Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Outcome: OutcomeDeadLetter},
		{LatencyMS: 1e22},
		{LatencyMS: 0.001, Version: 1 << 62},
	} {
		want, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		if got := a.appendJSON(nil); string(got) != string(want) {
			t.Errorf("attempt record\n got %s\nwant %s", got, want)
		}
	}
}
