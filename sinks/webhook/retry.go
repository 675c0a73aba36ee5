package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/walhook/walhook/internal/chunked"
	"github.com/walhook/walhook/internal/kafkaconn"
	"github.com/walhook/walhook/internal/redact"
)

// Reasons to defer a delivery without a request (and without using up an attempt).
var (
	errCircuitOpen   = errors.New("endpoint circuit open after consecutive failures (deliver.circuit_failures)")
	errTenantBacklog = errors.New("the tenant's backlog fills the endpoint's queue (deliver.endpoint_queue) while other tenants wait")
)

// deferTask puts off t until until without a request: its attempt number is unchanged, nothing
// is written to the attempt log and the subscription's health is untouched, since the receiver
// was not asked. An ordered task is held in its chain by the partition; any other goes through a
// retry topic, so that a dead endpoint holds neither memory nor a partition.
func (s *Sink) deferTask(t *task, until time.Time, why error) {
	if s.ctx.Err() != nil {
		return
	}
	s.m.deferred.WithLabelValues(deferReason(why)).Inc()
	if t.ordered {
		t.part.post(event{t: t, retryAt: until, deferred: true})
		return
	}
	j := t.job
	j.Due = until
	j.Kind = "retry"
	v, _ := json.Marshal(j)
	rec := &kgo.Record{Topic: s.cfg.Kafka.WebhookRetryTopic(s.tierFor(time.Until(until))), Key: jobKey(j.Subscription, t.snap.Key),
		Value: v, Headers: t.traceHeaders()}
	s.produceThen([]*kgo.Record{rec}, func() { t.part.post(event{t: t}) })
}

func deferReason(err error) string {
	switch {
	case errors.Is(err, errCircuitOpen):
		return "circuit_open"
	case errors.Is(err, errTenantBacklog):
		return "tenant_backlog"
	}
	return "other"
}

// backoff is the delay before attempt n+1 after attempt n failed: the schedule's entry with
// jitter, or the endpoint's Retry-After (capped) when it asked for one.
func (s *Sink) backoff(n int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, s.cfg.Deliver.MaxRetryAfter)
	}
	sched := s.cfg.Deliver.RetrySchedule
	d := sched[min(n-1, len(sched)-1)]
	j := s.cfg.Deliver.Jitter
	return time.Duration(float64(d) * (1 - j + 2*j*rand.Float64()))
}

// tierFor is the retry topic tier of a delay: the largest tier not above it.
func (s *Sink) tierFor(d time.Duration) time.Duration {
	tiers := s.cfg.Deliver.RetryTiers
	t := tiers[0]
	for _, x := range tiers {
		if x <= d {
			t = x
		}
	}
	return t
}

// finish is the runner's decision after an attempt (or a refusal to attempt): it writes the
// attempt log and, as needed, a retry or dead-letter record, updates subscription health, and
// reports the task done to its partition once Kafka acknowledged every record. It is called
// from endpoint workers and partition goroutines and never blocks on a partition.
func (s *Sink) finish(t *task, sub *Subscription, a attempt) {
	if s.ctx.Err() != nil {
		return // shutting down: the task stays unfinished and is redone after restart
	}
	log := Attempt{
		Subscription: t.job.Subscription, WebhookID: t.webhookID(),
		Attempt: t.job.Attempt, Time: a.at, Status: a.status, LatencyMS: float64(a.latency.Microseconds()) / 1000,
		EventType: t.snap.EventType, RootKey: t.snap.Key, Version: t.snap.Version,
		Tenant: t.snap.Tenant, ResponseBody: string(a.body),
	}
	if log.Time.IsZero() {
		log.Time = s.now()
	}
	s.m.observe(t, a)
	var recs []*kgo.Record
	retryAt := time.Time{}
	switch {
	case a.err == nil:
		log.Outcome = OutcomeDelivered
		s.noteSuccess(sub)
	case a.err.Kind == Gone:
		log.Outcome, log.Error = OutcomeGone, a.err.Error()
		s.disable(sub, "endpoint answered 410 Gone")
		recs = append(recs, s.deadLetter(t, a))
	case a.err.Kind == Permanent:
		log.Outcome, log.Error = OutcomeDeadLetter, a.err.Error()
		s.logPermanent(t, sub, a)
		recs = append(recs, s.deadLetter(t, a))
	default:
		log.Error = a.err.Error()
		disabled := s.noteFailure(sub, a.at)
		if disabled || t.job.Attempt >= s.cfg.Deliver.MaxAttempts() {
			log.Outcome = OutcomeDeadLetter
			recs = append(recs, s.deadLetter(t, a))
			break
		}
		log.Outcome = OutcomeRetry
		delay := s.backoff(t.job.Attempt, a.err.RetryAfter)
		log.NextAt = a.at.Add(delay)
		if t.ordered {
			retryAt = log.NextAt // held in its chain by the partition: see ordering.go
		} else {
			recs = append(recs, s.retryRecord(t, log.NextAt, delay))
		}
	}
	if log.Outcome == OutcomeDeadLetter || log.Outcome == OutcomeGone {
		s.m.deadLetters.Inc()
	}
	recs = append(recs, s.attemptRecord(log))
	s.produceThen(recs, func() { t.part.post(event{t: t, retryAt: retryAt}) })
}

// finishWithout ends a task that is not attempted: its subscription is disabled or gone.
func (s *Sink) finishWithout(t *task, outcome string, reason string) {
	if s.ctx.Err() != nil {
		return
	}
	if outcome == OutcomeDisabledTarget {
		s.log.Info("disabled target: delivery not sent", zap.String("subscription", t.job.Subscription),
			zap.String("event_type", t.snap.EventType), zap.String("root_key", t.snap.Key), zap.Int64("version", t.snap.Version),
			zap.String("disabled_reason", reason))
	} else {
		s.log.Warn("delivery for an unknown subscription dropped", zap.String("subscription", t.job.Subscription),
			zap.String("event_type", t.snap.EventType), zap.String("root_key", t.snap.Key), zap.Int64("version", t.snap.Version))
	}
	s.m.deliveries.WithLabelValues(outcome, "none").Inc()
	rec := s.attemptRecord(Attempt{Subscription: t.job.Subscription,
		WebhookID: t.webhookID(),
		Attempt:   t.job.Attempt, Time: s.now(), Outcome: outcome, Error: reason,
		EventType: t.snap.EventType, RootKey: t.snap.Key, Version: t.snap.Version, Tenant: t.snap.Tenant})
	s.produceThen([]*kgo.Record{rec}, func() { t.part.post(event{t: t}) })
}

func (s *Sink) logPermanent(t *task, sub *Subscription, a attempt) {
	fields := []zap.Field{zap.String("subscription", t.job.Subscription), zap.String("event_type", t.snap.EventType),
		zap.String("root_key", t.snap.Key), zap.Int64("version", t.snap.Version), zap.Error(a.err)}
	if errors.Is(a.err, ErrPayloadTooLarge) {
		s.log.Error("payload too large for webhook; dead-lettered (raise deliver.max_payload_bytes to send it)", fields...)
		return
	}
	s.log.Warn("delivery failed permanently; dead-lettered", append(fields, zap.String("url", redact.URL(sub.URL)))...)
}

func (s *Sink) retryRecord(t *task, due time.Time, delay time.Duration) *kgo.Record {
	j := t.job
	j.Attempt++
	j.Due = due
	j.Kind = "retry"
	v, _ := json.Marshal(j)
	return &kgo.Record{Topic: s.cfg.Kafka.WebhookRetryTopic(s.tierFor(delay)), Key: jobKey(j.Subscription, t.snap.Key), Value: v, Headers: t.traceHeaders()}
}

func (s *Sink) deadLetter(t *task, a attempt) *kgo.Record {
	j := t.job
	j.Kind = "dead_letter"
	j.DeadAt = s.now()
	j.LastStatus = a.status
	if a.err != nil {
		j.LastError = a.err.Error()
	}
	v, _ := json.Marshal(j)
	return &kgo.Record{Topic: s.cfg.Kafka.WebhookDeadLetterTopic(), Key: jobKey(j.Subscription, t.snap.Key), Value: v, Headers: t.traceHeaders()}
}

// produceThen produces recs and calls done once all are acknowledged. A failed produce stops
// the sink: the task stays unfinished, its offset uncommitted, and it is redone after restart.
//
// A record above kafka.max_record_bytes (a job carries its snapshot) goes as its chunks. Every
// produce holds produceMu, so that no other record of this producer comes between a group's
// chunks: a consumer gives up a group its producer interrupts (chunked.Assembler). Produce only
// blocks while kgo's buffer is full, and the promises never take produceMu.
func (s *Sink) produceThen(recs []*kgo.Record, done func()) {
	recs = chunked.Expand(recs, kafkaconn.RecordLimit(s.cfg.Kafka))
	s.produceMu.Lock()
	defer s.produceMu.Unlock()
	var mu sync.Mutex
	left := len(recs)
	for _, r := range recs {
		s.cl.Produce(s.ctx, r, func(r *kgo.Record, err error) {
			if err != nil {
				if s.ctx.Err() == nil {
					s.stop(fmt.Errorf("webhook: produce to %s: %w", r.Topic, err))
				}
				return
			}
			mu.Lock()
			left--
			last := left == 0
			mu.Unlock()
			if last {
				done()
			}
		})
	}
}

// noteSuccess clears a subscription's failing_since. Health is written only on transitions, by
// the health writer (health.go), never on the delivery path.
func (s *Sink) noteSuccess(sub *Subscription) {
	if sub == nil || sub.FailingSince.IsZero() {
		return
	}
	s.idx.update(sub.UUID, func(c *Subscription) { c.FailingSince = time.Time{} })
	s.health.failing(sub.UUID, time.Time{})
}

// noteFailure records the start of a failing streak and disables the subscription when the
// streak is older than deliver.auto_disable_after. It reports whether it disabled it.
func (s *Sink) noteFailure(sub *Subscription, at time.Time) bool {
	if sub == nil {
		return false
	}
	cur := s.idx.get(sub.UUID)
	if cur == nil || !cur.Enabled {
		return false
	}
	if cur.FailingSince.IsZero() {
		s.idx.update(sub.UUID, func(c *Subscription) { c.FailingSince = at })
		s.health.failing(sub.UUID, at)
		return false
	}
	if at.Sub(cur.FailingSince) < s.cfg.Deliver.AutoDisableAfter {
		return false
	}
	s.disable(cur, fmt.Sprintf("auto-disabled: failing continuously since %s (deliver.auto_disable_after %s)",
		cur.FailingSince.UTC().Format(time.RFC3339), s.cfg.Deliver.AutoDisableAfter))
	return true
}

// disable turns a subscription off in the index at once and in PostgreSQL.
func (s *Sink) disable(sub *Subscription, reason string) {
	if sub == nil {
		return
	}
	s.idx.update(sub.UUID, func(c *Subscription) { c.Enabled = false; c.DisabledReason = reason })
	s.m.disabled.WithLabelValues(disableLabel(reason)).Inc()
	s.log.Warn("subscription disabled", zap.String("subscription", sub.UUID), zap.String("tenant", sub.Tenant),
		zap.String("event_type", sub.EventType), zap.String("reason", reason))
	s.health.disable(sub.UUID, reason)
}

func disableLabel(reason string) string {
	if len(reason) >= 4 && reason[:4] == "auto" {
		return "auto"
	}
	return "gone"
}
