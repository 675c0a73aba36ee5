package webhook

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/walhook/walhook/avro"
)

// task is one delivery of one snapshot to one subscription, owned by the partition of the
// record it came from.
type task struct {
	job     Job
	snap    avro.Snapshot
	ordered bool
	part    *partition
	rec     *recState
	ep      *endpoint
	sub     *Subscription // set when queued at the endpoint
	timer   *time.Timer   // while held until due; owned by the partition goroutine
	trace   []byte        // traceparent of the consumed record; nil when tracing is disabled
	id      string        // webhookID's, once computed
}

// webhookID is the delivery's webhook-id (MessageID), computed once: the request and its
// attempt-log record both carry it. Only the task's current owner calls it.
func (t *task) webhookID() string {
	if t.id == "" {
		t.id = MessageID(t.job.Subscription, t.snap.RootType, t.snap.Key, t.snap.Version)
	}
	return t.id
}

// recState counts a consumed record's unfinished tasks.
type recState struct {
	offset    int64
	remaining int
}

// event is sent to a partition: a task finished (retryAt zero), an ordered task must be
// retried (or, deferred, tried for the first time at its current attempt) at retryAt, a held
// task is due, or an endpoint whose full queue paused the partition is below half again.
type event struct {
	t        *task
	retryAt  time.Time
	due      bool
	deferred bool
	unblock  *endpoint
}

type topicKind int

const (
	kindSnapshot topicKind = iota
	kindRetry
	kindRequest
)

// partition is one assigned partition. Its goroutine (run) owns recs, pending, chains and the
// paused flag, and is the only writer of committable: the commit watermark, the offset below
// which every task is finished. Other goroutines reach it only through give and post, which
// never block.
type partition struct {
	s     *Sink
	topic string
	id    int32
	kind  topicKind
	done  chan struct{} // closed when run returns
	stop  context.CancelFunc

	committable atomic.Int64 // -1 until the first record is finished

	mu     sync.Mutex
	inbox  [][]*kgo.Record // guarded by mu; fetched records not yet handled
	events []event         // guarded by mu
	wake   chan struct{}   // capacity 1: records were given or events posted

	// Owned by run.
	recs    []*recState
	backlog [][]*kgo.Record // fetched, not yet handled: the partition was full
	pending int
	paused  bool
	chains  map[chainKey]*chain
	held    map[*task]struct{}
	blocked map[*endpoint]struct{} // endpoints whose full queue pauses this partition
}

func newPartition(s *Sink, topic string, id int32) *partition {
	p := &partition{s: s, topic: topic, id: id, kind: s.topicKind(topic),
		done: make(chan struct{}), wake: make(chan struct{}, 1), chains: map[chainKey]*chain{}, held: map[*task]struct{}{},
		blocked: map[*endpoint]struct{}{}}
	p.committable.Store(-1)
	return p
}

// post hands an event to the partition without ever blocking (a produce callback must not
// wait on a partition that may itself be waiting to produce).
func (p *partition) post(ev event) {
	p.mu.Lock()
	p.events = append(p.events, ev)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// give queues fetched records for the partition without ever blocking (the poll loop holds
// the group's rebalance until it has handed out a poll's records: see pollLoop).
func (p *partition) give(recs []*kgo.Record) {
	p.mu.Lock()
	p.inbox = append(p.inbox, recs)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// takeWork returns the queued records and events.
func (p *partition) takeWork() ([][]*kgo.Record, []event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	in, evs := p.inbox, p.events
	p.inbox, p.events = nil, nil
	return in, evs
}

func (p *partition) run(ctx context.Context) {
	defer close(p.done)
	defer p.cleanup()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
			in, evs := p.takeWork()
			p.backlog = append(p.backlog, in...)
			for _, ev := range evs {
				p.onEvent(ev)
			}
			if !p.handleBacklog(ctx) {
				return // revoked or stopping: the rest is the next owner's
			}
		}
		p.advance()
	}
}

// full: the partition has as many unfinished deliveries as it may, or feeds an endpoint whose
// queue is full; fetched records wait in the backlog meanwhile.
func (p *partition) full() bool {
	return p.pending >= p.s.cfg.Deliver.MaxPending || len(p.blocked) > 0
}

// handleBacklog turns fetched records into tasks until the partition is full. Records fetched
// before the pause took effect (or while a snapshot waited for the subscription index) stay in
// the backlog, as records, not as tasks: memory stays bounded by deliver.max_pending tasks plus
// what one pause lets through. It reports false when ctx ended.
func (p *partition) handleBacklog(ctx context.Context) bool {
	for len(p.backlog) > 0 && !p.full() {
		recs := p.backlog[0]
		for len(recs) > 0 && !p.full() {
			if ctx.Err() != nil {
				return false
			}
			p.handle(ctx, recs[0])
			recs[0] = nil
			recs = recs[1:]
		}
		if len(recs) == 0 {
			p.backlog[0] = nil
			p.backlog = p.backlog[1:]
		} else {
			p.backlog[0] = recs
		}
	}
	return ctx.Err() == nil
}

func (p *partition) cleanup() {
	for t := range p.held {
		t.timer.Stop()
	}
	if p.paused {
		p.s.cl.ResumeFetchPartitions(map[string][]int32{p.topic: {p.id}})
	}
}

// handle turns one record into tasks and starts them. A record whose decoding was cut short by
// the partition stopping (or that stopped the sink: deliver.on_poison stop) is not recorded, so
// the watermark never passes it.
func (p *partition) handle(ctx context.Context, r *kgo.Record) {
	tasks := p.decode(ctx, r)
	if ctx.Err() != nil {
		return
	}
	rs := &recState{offset: r.Offset}
	p.recs = append(p.recs, rs)
	rs.remaining = len(tasks)
	p.pending += len(tasks)
	for _, t := range tasks {
		t.rec = rs
		t.ep = p.s.eps.get(endpointKeyOf(p.s, t))
		t.ep.track(t)
		p.start(t)
	}
}

func endpointKeyOf(s *Sink, t *task) string {
	if sub := s.idx.get(t.job.Subscription); sub != nil {
		return endpointKey(sub.URL)
	}
	return "unknown"
}

func (p *partition) decode(ctx context.Context, r *kgo.Record) []*task {
	switch p.kind {
	case kindSnapshot:
		snap, err := p.s.decodeSnapshot(ctx, r)
		for backoff := time.Second; errors.Is(err, avro.ErrRegistryUnavailable) && ctx.Err() == nil; backoff = min(2*backoff, 30*time.Second) {
			p.s.log.Warn("webhook: schema registry unavailable; retrying the snapshot record", zap.String("topic", r.Topic),
				zap.Int32("partition", r.Partition), zap.Int64("offset", r.Offset), zap.Duration("retry_in", backoff), zap.Error(err))
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			snap, err = p.s.decodeSnapshot(ctx, r)
		}
		if err != nil && ctx.Err() != nil {
			return nil // stopping: not undecodable, handle drops it unrecorded
		}
		if err != nil {
			p.s.poison(ctx, r, fmt.Errorf("undecodable snapshot record: %w", err))
			return nil
		}
		p.s.awaitSubscriptions(ctx, &snap)
		if ctx.Err() != nil {
			return nil
		}
		return p.s.traced(r, p.s.match(p, &snap))
	default:
		j, err := decodeJobRecord(r)
		if err != nil {
			p.s.poison(ctx, r, fmt.Errorf("undecodable job record: %w", err))
			return nil
		}
		if p.kind == kindRequest {
			j.Attempt, j.Due, j.FirstAttempt = 1, time.Time{}, time.Time{}
		}
		return p.s.traced(r, []*task{{job: j, snap: j.Snapshot.snapshot(), part: p}})
	}
}

// start dispatches t now, or holds it until its due time, or queues it behind its ordered chain.
func (p *partition) start(t *task) {
	if wait := time.Until(t.job.Due); wait > 0 {
		p.hold(t, wait)
		return
	}
	if t.ordered {
		p.startOrdered(t)
		return
	}
	p.dispatch(t)
}

// dispatch hands t to its endpoint and notes when the endpoint's queue is full.
func (p *partition) dispatch(t *task) {
	if p.s.dispatch(t) {
		p.blocked[t.ep] = struct{}{}
	}
}

func (p *partition) hold(t *task, wait time.Duration) {
	p.held[t] = struct{}{}
	t.timer = time.AfterFunc(wait, func() { p.post(event{t: t, due: true}) })
}

func (p *partition) onEvent(ev event) {
	t := ev.t
	switch {
	case ev.unblock != nil:
		delete(p.blocked, ev.unblock)
	case ev.due:
		delete(p.held, t)
		t.timer = nil
		if t.ordered {
			p.dispatch(t) // an ordered retry: its chain is still busy with it
			return
		}
		p.start(t)
	case !ev.retryAt.IsZero():
		if !ev.deferred {
			t.job.Attempt++
		}
		t.job.Due = ev.retryAt
		p.hold(t, time.Until(ev.retryAt))
	default:
		if t.ordered {
			p.finishOrdered(t)
		}
		t.ep.untrack(t)
		t.rec.remaining--
		p.pending--
	}
}

// advance moves the commit watermark past finished records and pauses or resumes fetching.
func (p *partition) advance() {
	i := 0
	for i < len(p.recs) && p.recs[i].remaining == 0 {
		p.committable.Store(p.recs[i].offset + 1)
		i++
	}
	if i > 0 {
		p.recs = append(p.recs[:0], p.recs[i:]...)
	}
	limit := p.s.cfg.Deliver.MaxPending
	switch {
	case !p.paused && (p.full() || len(p.backlog) > 0):
		p.paused = true
		p.s.cl.PauseFetchPartitions(map[string][]int32{p.topic: {p.id}})
	case p.paused && p.pending < limit/2 && len(p.blocked) == 0 && len(p.backlog) == 0:
		p.paused = false
		p.s.cl.ResumeFetchPartitions(map[string][]int32{p.topic: {p.id}})
	}
}

// topicKind says what a consumed topic carries.
func (s *Sink) topicKind(topic string) topicKind {
	switch {
	case topic == s.cfg.Kafka.WebhookRequestTopic():
		return kindRequest
	case strings.HasPrefix(topic, s.cfg.Kafka.TopicPrefix+"webhook.retry."):
		return kindRetry
	}
	return kindSnapshot
}
