package webhook

import (
	"errors"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Errors of deliveries deferred without a request; both are retryable.
var (
	errQueueFull   = errors.New("endpoint queue full (deliver.endpoint_queue); deferred to a retry topic")
	errCircuitOpen = errors.New("endpoint circuit open after consecutive failures (deliver.circuit_failures); deferred to a retry topic")
)

// endpoints are the per-endpoint queues. An endpoint is scheme://host:port: subscriptions to one
// server share its concurrency and rate limit, and a dead server only ties up its own workers.
type endpoints struct {
	s  *Sink
	mu sync.Mutex
	m  map[string]*endpoint // guarded by mu
}

// endpoint is one server's queue, workers, rate limiter and circuit breaker.
type endpoint struct {
	key      string
	queue    chan *task
	workers  atomic.Int32
	limiter  *rate.Limiter
	failures atomic.Int32 // consecutive failed attempts
	openTill atomic.Int64 // unix nanos until which the circuit is open

	mu      sync.Mutex
	pending map[*task]time.Time // held, queued or in flight → first attempt time; guarded by mu
}

func endpointKey(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Scheme + "://" + u.Host
}

func (e *endpoints) get(key string) *endpoint {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep := e.m[key]
	if ep == nil {
		d := e.s.cfg.Deliver
		ep = &endpoint{key: key, queue: make(chan *task, d.EndpointQueue),
			limiter: rate.NewLimiter(rate.Limit(d.EndpointRate), d.EndpointBurst), pending: map[*task]time.Time{}}
		e.m[key] = ep
	}
	return ep
}

func (e *endpoints) all() []*endpoint {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*endpoint, 0, len(e.m))
	for _, ep := range e.m {
		out = append(out, ep)
	}
	return out
}

func (ep *endpoint) track(t *task) {
	ep.mu.Lock()
	ep.pending[t] = t.job.FirstAttempt
	ep.mu.Unlock()
}

func (ep *endpoint) untrack(t *task) {
	ep.mu.Lock()
	delete(ep.pending, t)
	ep.mu.Unlock()
}

// backlog is the number of pending tasks, how many of them are retries, and the age of the
// oldest.
func (ep *endpoint) backlog(now time.Time) (n, retries int, oldest time.Duration) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	for t, first := range ep.pending {
		n++
		if t.job.Attempt > 1 {
			retries++
		}
		if !first.IsZero() {
			oldest = max(oldest, now.Sub(first))
		}
	}
	return n, retries, oldest
}

// submit queues t for its endpoint without blocking. A full queue or an open circuit hands the
// task straight back to the runner as a retryable failure, so a dead endpoint never holds more
// than its queue and never stalls a partition.
func (e *endpoints) submit(t *task, sub *Subscription) {
	ep := t.ep
	if time.Now().UnixNano() < ep.openTill.Load() {
		e.s.finish(t, sub, attempt{at: e.s.now(), err: &DeliveryError{Kind: Retryable, Err: errCircuitOpen}})
		return
	}
	t.sub = sub
	select {
	case ep.queue <- t:
	default:
		e.s.finish(t, sub, attempt{at: e.s.now(), err: &DeliveryError{Kind: Retryable, Err: errQueueFull}})
		return
	}
	if n := ep.workers.Load(); n < int32(e.s.cfg.Deliver.EndpointConcurrency) && ep.workers.CompareAndSwap(n, n+1) {
		e.s.workers.Go(func() { e.work(ep) })
	}
}

// work runs requests from ep's queue until it is empty or the sink stops.
//
// Race walked through: a worker finds the queue empty and leaves (decrements workers) while
// submit adds a task and sees the old worker count at the limit, so starts none. The worker
// therefore checks the queue again after leaving and takes its slot back when a task is there.
func (e *endpoints) work(ep *endpoint) {
	for {
		select {
		case <-e.s.ctx.Done():
			ep.workers.Add(-1)
			return
		case t := <-ep.queue:
			e.do(ep, t)
			continue
		default:
		}
		ep.workers.Add(-1)
		if len(ep.queue) == 0 {
			return
		}
		n := ep.workers.Load()
		if n >= int32(e.s.cfg.Deliver.EndpointConcurrency) || !ep.workers.CompareAndSwap(n, n+1) {
			return
		}
	}
}

func (e *endpoints) do(ep *endpoint, t *task) {
	s := e.s
	if err := ep.limiter.Wait(s.ctx); err != nil {
		return // stopping
	}
	sub := s.idx.get(t.job.Subscription)
	switch {
	case sub == nil:
		s.finishWithout(t, OutcomeUnknown, "subscription no longer exists")
		return
	case !sub.Enabled:
		s.finishWithout(t, OutcomeDisabledTarget, sub.DisabledReason)
		return
	}
	var a attempt
	if s.tracer != nil {
		a = s.tracedSend(sub, t)
	} else {
		a = s.sender.send(s.ctx, sub, &t.snap, t.job.Attempt)
	}
	if s.ctx.Err() != nil {
		return
	}
	switch {
	case a.err == nil:
		ep.failures.Store(0)
	case a.err.Kind == Retryable && a.status == 0 || a.status >= 500:
		if ep.failures.Add(1) >= int32(s.cfg.Deliver.CircuitFailures) {
			ep.openTill.Store(time.Now().Add(s.cfg.Deliver.CircuitCooldown).UnixNano())
		}
	}
	s.finish(t, sub, a)
}
