package webhook

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Attempt is one record of the attempt-log topic, keyed by subscription uuid. `walhook hooks
// log` reads them.
type Attempt struct {
	Subscription string    `json:"subscription"`
	WebhookID    string    `json:"webhook_id"`
	Attempt      int       `json:"attempt"`
	Time         time.Time `json:"time"`
	// Outcome is delivered, retry, dead_letter, gone, disabled_target or unknown_subscription.
	Outcome   string    `json:"outcome"`
	Status    int       `json:"status"`
	LatencyMS float64   `json:"latency_ms"`
	Error     string    `json:"error,omitempty"`
	EventType string    `json:"event_type"`
	RootKey   string    `json:"root_key"`
	Version   int64     `json:"version"`
	NextAt    time.Time `json:"next_attempt,omitzero"`
	// Tenant is the snapshot's tenant (empty in records of walhook versions before the API).
	Tenant string `json:"tenant,omitempty"`
	// ResponseBody is the first ResponseBodyBytes of the endpoint's answer, as text.
	ResponseBody string `json:"response_body,omitempty"`
}

// ResponseBodyBytes is how much of an endpoint's answer the attempt log keeps.
const ResponseBodyBytes = 1024

// Attempt outcomes.
const (
	OutcomeDelivered      = "delivered"
	OutcomeRetry          = "retry"
	OutcomeDeadLetter     = "dead_letter"
	OutcomeGone           = "gone"
	OutcomeDisabledTarget = "disabled_target"
	OutcomeUnknown        = "unknown_subscription"
)

func (s *Sink) attemptRecord(a Attempt) *kgo.Record {
	return &kgo.Record{Topic: s.cfg.Kafka.WebhookAttemptTopic(), Key: []byte(a.Subscription), Value: a.appendJSON(nil)}
}

// appendJSON appends a as encoding/json marshals it, byte for byte (TestAttemptJSON), without
// reflection: one record is written per attempt, on the delivery path.
func (a *Attempt) appendJSON(b []byte) []byte {
	b = slices.Grow(b, 320+len(a.Error)+len(a.ResponseBody))
	b = append(b, `{"subscription":`...)
	b = appendJSONString(b, a.Subscription)
	b = append(b, `,"webhook_id":`...)
	b = appendJSONString(b, a.WebhookID)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(a.Attempt), 10)
	b = append(b, `,"time":`...)
	b = appendJSONTime(b, a.Time)
	b = append(b, `,"outcome":`...)
	b = appendJSONString(b, a.Outcome)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(a.Status), 10)
	b = append(b, `,"latency_ms":`...)
	b = appendJSONFloat(b, a.LatencyMS)
	if a.Error != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, a.Error)
	}
	b = append(b, `,"event_type":`...)
	b = appendJSONString(b, a.EventType)
	b = append(b, `,"root_key":`...)
	b = appendJSONString(b, a.RootKey)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, a.Version, 10)
	if !a.NextAt.IsZero() {
		b = append(b, `,"next_attempt":`...)
		b = appendJSONTime(b, a.NextAt)
	}
	if a.Tenant != "" {
		b = append(b, `,"tenant":`...)
		b = appendJSONString(b, a.Tenant)
	}
	if a.ResponseBody != "" {
		b = append(b, `,"response_body":`...)
		b = appendJSONString(b, a.ResponseBody)
	}
	return append(b, '}')
}

// appendJSONTime appends t as time.Time's MarshalJSON does (RFC 3339 with nanoseconds), or as
// MarshalJSON itself for a year it refuses.
func appendJSONTime(b []byte, t time.Time) []byte {
	if y := t.Year(); y < 0 || y > 9999 {
		v, _ := json.Marshal(t) // an error: such a time cannot be written; keep what json does
		return append(b, v...)
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendJSONFloat appends f as encoding/json does.
func appendJSONFloat(b []byte, f float64) []byte {
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) || math.IsNaN(f) || math.IsInf(f, 0) {
		v, _ := json.Marshal(f) // exponent form (or an unencodable value): rare, leave it to json
		return append(b, v...)
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}
