package webhook

import (
	"encoding/json"
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
	v, _ := json.Marshal(a) // plain struct: cannot fail
	return &kgo.Record{Topic: s.cfg.Kafka.WebhookAttemptTopic(), Key: []byte(a.Subscription), Value: v}
}
