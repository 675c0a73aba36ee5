package api

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/chunked"
	"github.com/walhook/walhook/internal/kafkaconn"
	"github.com/walhook/walhook/sinks/webhook"
)

// deliveryLog is the API's view of the attempt-log and dead-letter topics: it reads both from
// their start and keeps the newest deliveries (attempts grouped by webhook-id) and dead letters
// in memory, bounded by api.log_size, plus the last sampleWindow of attempts for the chart.
// Filtering and paging run over it; redriving a filtered set reads the topic itself, so it
// is complete whatever the bound.
type deliveryLog struct {
	size     int
	tenantOf func(ctx context.Context, sub string) string

	mu         sync.RWMutex
	seq        int64                // guarded by mu
	deliveries map[string]*delivery // guarded by mu; by webhook-id
	order      []*delivery          // guarded by mu; oldest first
	dead       []*deadEntry         // guarded by mu; oldest first
	samples    []sample             // guarded by mu; oldest first
}

type delivery struct {
	seq                                 int64
	id, sub, tenant, eventType, rootKey string
	version                             int64
	attempts                            []webhook.Attempt
}

type deadEntry struct {
	seq    int64
	dl     webhook.DeadLetter
	tenant string
}

type sample struct {
	at        time.Time
	latencyMS float64
	ok        bool
	tenant    string
}

const (
	maxAttemptsPerDelivery = 100
	sampleWindow           = 15 * time.Minute
)

func newDeliveryLog(size int, tenantOf func(context.Context, string) string) *deliveryLog {
	return &deliveryLog{size: size, tenantOf: tenantOf, deliveries: map[string]*delivery{}}
}

// run tails both topics until ctx is done.
func (l *deliveryLog) run(ctx context.Context, cfg config.Kafka, log *zap.Logger) error {
	opts, err := kafkaconn.Opts(cfg)
	if err != nil {
		return err
	}
	attempts, dlq := cfg.WebhookAttemptTopic(), cfg.WebhookDeadLetterTopic()
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(attempts, dlq),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(250*time.Millisecond))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	asm := chunked.NewAssembler(false) // dead letters above kafka.max_record_bytes are chunk groups
	for {
		fs := asm.Fetches(cl.PollFetches(ctx))
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				log.Warn("api: reading the delivery log", zap.String("topic", topic), zap.Int32("partition", p), zap.Error(err))
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			switch r.Topic {
			case attempts:
				var a webhook.Attempt
				if json.Unmarshal(r.Value, &a) == nil && a.WebhookID != "" {
					if a.Tenant == "" {
						a.Tenant = l.tenantOf(ctx, a.Subscription)
					}
					l.addAttempt(a)
				}
			case dlq:
				if d, ok := webhook.DeadLetterOf(r); ok {
					l.addDead(d)
				}
			}
		})
	}
}

func (l *deliveryLog) addAttempt(a webhook.Attempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.deliveries[a.WebhookID]
	if d == nil {
		l.seq++
		d = &delivery{seq: l.seq, id: a.WebhookID, sub: a.Subscription, tenant: a.Tenant, eventType: a.EventType,
			rootKey: a.RootKey, version: a.Version}
		l.deliveries[a.WebhookID] = d
		l.order = append(l.order, d)
		if len(l.order) > l.size {
			delete(l.deliveries, l.order[0].id)
			l.order = slices.Delete(l.order, 0, 1)
		}
	}
	d.attempts = append(d.attempts, a)
	if len(d.attempts) > maxAttemptsPerDelivery {
		d.attempts = slices.Delete(d.attempts, 1, 2) // keep the first and the newest
	}
	if a.Outcome != webhook.OutcomeDisabledTarget && a.Outcome != webhook.OutcomeUnknown {
		l.samples = append(l.samples, sample{at: a.Time, latencyMS: a.LatencyMS, ok: a.Outcome == webhook.OutcomeDelivered, tenant: a.Tenant})
	}
	cut := time.Now().Add(-sampleWindow)
	i := sort.Search(len(l.samples), func(i int) bool { return !l.samples[i].at.Before(cut) })
	if i > 0 && (i > len(l.samples)/2 || len(l.samples) > 4*l.size) {
		l.samples = slices.Delete(l.samples, 0, max(i, len(l.samples)-4*l.size))
	}
}

func (l *deliveryLog) addDead(d webhook.DeadLetter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	l.dead = append(l.dead, &deadEntry{seq: l.seq, dl: d, tenant: d.Job.Snapshot.Tenant})
	if len(l.dead) > l.size {
		l.dead = slices.Delete(l.dead, 0, 1)
	}
}

// Dead-letter states.
const (
	stateDead      = "dead"
	stateRetrying  = "retrying"
	stateDelivered = "delivered"
)

// stateLocked says what became of a dead letter: delivered when an attempt after it was
// delivered, retrying when one after it is pending, dead otherwise. l.mu must be held.
func (l *deliveryLog) stateLocked(d webhook.DeadLetter) string {
	dv := l.deliveries[d.WebhookID()]
	if dv == nil {
		return stateDead
	}
	state := stateDead
	for _, a := range dv.attempts {
		if !a.Time.After(d.Time) {
			continue
		}
		switch a.Outcome {
		case webhook.OutcomeDelivered:
			return stateDelivered
		case webhook.OutcomeRetry:
			state = stateRetrying
		default:
			state = stateDead
		}
	}
	return state
}

func (l *deliveryLog) state(d webhook.DeadLetter) string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.stateLocked(d)
}

// deliveryFilter selects deliveries; zero fields select everything.
type deliveryFilter struct {
	tenant, sub, eventType, outcome, rootKey string
	before                                   int64 // cursor: seq below this; 0 from the newest
	limit                                    int
}

// listDeliveries returns matching deliveries newest first and the next cursor (0: no more).
func (l *deliveryLog) listDeliveries(f deliveryFilter) ([]deliveryView, int64) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var out []deliveryView
	for i := len(l.order) - 1; i >= 0; i-- {
		d := l.order[i]
		if f.before > 0 && d.seq >= f.before {
			continue
		}
		last := d.attempts[len(d.attempts)-1]
		if (f.tenant != "" && d.tenant != f.tenant) || (f.sub != "" && d.sub != f.sub) || (f.eventType != "" && d.eventType != f.eventType) ||
			(f.outcome != "" && last.Outcome != f.outcome) || (f.rootKey != "" && d.rootKey != f.rootKey) {
			continue
		}
		if len(out) == f.limit {
			return out, out[len(out)-1].seq
		}
		out = append(out, d.view(false))
	}
	return out, 0
}

func (l *deliveryLog) getDelivery(id string) (deliveryView, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	d := l.deliveries[id]
	if d == nil {
		return deliveryView{}, false
	}
	return d.view(true), true
}

type deadFilter struct {
	tenant, sub, eventType, state string
	since, until                  time.Time
	before                        int64
	limit                         int
}

func (f deadFilter) match(d webhook.DeadLetter, tenant string) bool {
	return (f.tenant == "" || tenant == f.tenant) && (f.sub == "" || d.Job.Subscription == f.sub) &&
		(f.eventType == "" || d.Job.Snapshot.EventType == f.eventType) &&
		(f.since.IsZero() || !d.Time.Before(f.since)) && (f.until.IsZero() || d.Time.Before(f.until))
}

func (l *deliveryLog) listDead(f deadFilter) ([]deadLetterView, int64) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var out []deadLetterView
	for i := len(l.dead) - 1; i >= 0; i-- {
		e := l.dead[i]
		if f.before > 0 && e.seq >= f.before {
			continue
		}
		if !f.match(e.dl, e.tenant) {
			continue
		}
		st := l.stateLocked(e.dl)
		if f.state != "" && st != f.state {
			continue
		}
		if len(out) == f.limit {
			return out, out[len(out)-1].seq
		}
		v := deadView(e.dl, st, false)
		v.seq = e.seq
		out = append(out, v)
	}
	return out, 0
}

// counts are the numbers a tenant's or the operator's overview shows.
func (l *deliveryLog) counts(tenant string) (deliveries, deadOpen int) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	for _, d := range l.order {
		if tenant == "" || d.tenant == tenant {
			deliveries++
		}
	}
	for _, e := range l.dead {
		if (tenant == "" || e.tenant == tenant) && l.stateLocked(e.dl) == stateDead {
			deadOpen++
		}
	}
	return deliveries, deadOpen
}

// bucket is one second of the delivery chart.
type bucket struct {
	Time      time.Time `json:"time"`
	Delivered int       `json:"delivered"`
	Failed    int       `json:"failed"`
	P50       *float64  `json:"latency_p50_ms"`
	P99       *float64  `json:"latency_p99_ms"`
}

// stats buckets the attempts of the last seconds by second (oldest first).
func (l *deliveryLog) stats(tenant string, seconds int, now time.Time) []bucket {
	end := now.Truncate(time.Second).Add(time.Second)
	start := end.Add(-time.Duration(seconds) * time.Second)
	out := make([]bucket, seconds)
	lat := make([][]float64, seconds)
	for i := range out {
		out[i].Time = start.Add(time.Duration(i) * time.Second).UTC()
	}
	l.mu.RLock()
	i := sort.Search(len(l.samples), func(i int) bool { return !l.samples[i].at.Before(start) })
	for _, s := range l.samples[i:] {
		if !s.at.Before(end) || (tenant != "" && s.tenant != tenant) {
			continue
		}
		b := int(s.at.Sub(start) / time.Second)
		if b < 0 || b >= seconds {
			continue
		}
		if s.ok {
			out[b].Delivered++
		} else {
			out[b].Failed++
		}
		lat[b] = append(lat[b], s.latencyMS)
	}
	l.mu.RUnlock()
	for b := range out {
		if len(lat[b]) == 0 {
			continue
		}
		slices.Sort(lat[b])
		p50, p99 := quantile(lat[b], 0.5), quantile(lat[b], 0.99)
		out[b].P50, out[b].P99 = &p50, &p99
	}
	return out
}

func quantile(sorted []float64, q float64) float64 {
	i := int(q*float64(len(sorted)) + 0.5)
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

// Views: the JSON the API returns.

type attemptView struct {
	Attempt      int        `json:"attempt"`
	Time         time.Time  `json:"time"`
	Outcome      string     `json:"outcome"`
	Status       int        `json:"status"`
	LatencyMS    float64    `json:"latency_ms"`
	Error        string     `json:"error"`
	ResponseBody string     `json:"response_body"`
	NextAttempt  *time.Time `json:"next_attempt"`
}

type deliveryView struct {
	seq           int64
	WebhookID     string        `json:"webhook_id"`
	Subscription  string        `json:"subscription"`
	Tenant        string        `json:"tenant"`
	EventType     string        `json:"event_type"`
	RootKey       string        `json:"root_key"`
	Version       int64         `json:"version"`
	Outcome       string        `json:"outcome"`
	Status        int           `json:"status"`
	AttemptCount  int           `json:"attempt_count"`
	FirstAttempt  time.Time     `json:"first_attempt_at"`
	LastAttempt   time.Time     `json:"last_attempt_at"`
	LastLatencyMS float64       `json:"last_latency_ms"`
	Attempts      []attemptView `json:"attempts,omitempty"`
}

func (d *delivery) view(withAttempts bool) deliveryView {
	first, last := d.attempts[0], d.attempts[len(d.attempts)-1]
	v := deliveryView{seq: d.seq, WebhookID: d.id, Subscription: d.sub, Tenant: d.tenant, EventType: d.eventType,
		RootKey: d.rootKey, Version: d.version, Outcome: last.Outcome, Status: last.Status, AttemptCount: len(d.attempts),
		FirstAttempt: first.Time.UTC(), LastAttempt: last.Time.UTC(), LastLatencyMS: last.LatencyMS}
	if withAttempts {
		v.Attempts = make([]attemptView, len(d.attempts))
		for i, a := range d.attempts {
			av := attemptView{Attempt: a.Attempt, Time: a.Time.UTC(), Outcome: a.Outcome, Status: a.Status, LatencyMS: a.LatencyMS,
				Error: a.Error, ResponseBody: a.ResponseBody}
			if !a.NextAt.IsZero() {
				t := a.NextAt.UTC()
				av.NextAttempt = &t
			}
			v.Attempts[i] = av
		}
	}
	return v
}

type deadLetterView struct {
	seq          int64
	ID           string          `json:"id"`
	Kind         string          `json:"kind"`
	State        string          `json:"state"`
	Subscription string          `json:"subscription"`
	Tenant       string          `json:"tenant"`
	EventType    string          `json:"event_type"`
	RootKey      string          `json:"root_key"`
	Version      int64           `json:"version"`
	WebhookID    string          `json:"webhook_id"`
	DeadAt       time.Time       `json:"dead_at"`
	Attempts     int             `json:"attempts"`
	LastStatus   int             `json:"last_status"`
	LastError    string          `json:"last_error"`
	Payload      json.RawMessage `json:"payload,omitempty"`
}

func deadView(d webhook.DeadLetter, state string, withPayload bool) deadLetterView {
	s := d.Job.Snapshot
	v := deadLetterView{ID: d.ID(), Kind: webhook.DeadLetterKind, State: state, Subscription: d.Job.Subscription, Tenant: s.Tenant,
		EventType: s.EventType, RootKey: s.Key, Version: s.Version, WebhookID: d.WebhookID(), DeadAt: d.Time.UTC(),
		Attempts: d.Job.Attempt, LastStatus: d.Job.LastStatus, LastError: d.Job.LastError}
	if withPayload {
		if json.Valid(s.Payload) {
			v.Payload = s.Payload
		} else {
			v.Payload, _ = json.Marshal(string(s.Payload))
		}
	}
	return v
}
