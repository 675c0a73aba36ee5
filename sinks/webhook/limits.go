package webhook

import (
	"container/list"
	"context"
	"math"
	"net/url"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/walhook/walhook/config"
)

// An endpoint (scheme://host:port) is one receiver server: every subscription pointing at it
// shares its concurrency, so many tenants on one integration or compliance service cannot
// overload it, and a dead server ties up only its own deliveries.
//
// Inside an endpoint, deliveries wait in one FIFO lane per tenant, served round-robin: a tenant
// with a large backlog or a slow path holds at most deliver.endpoint_tenant_share of the
// endpoint's concurrency while others wait. The concurrency itself adapts (AIMD): it grows by
// about one per round trip while answers come back without errors at near the best latency seen,
// and is cut by 30% (at most once per round trip) on 429, 503, timeouts and connection errors; a
// Retry-After on 429/503 also pauses the whole endpoint for that long (capped by hostPauseCap).
//
// A full queue never costs an attempt: deliveries wait, and once an endpoint has
// deliver.endpoint_queue deliveries waiting, the partitions that feed it pause fetching until
// it is below half. Only a tenant whose backlog holds half of a queue that other tenants share
// is put off through a retry topic instead, so that it cannot pause its neighbours'
// partitions. An attempt is counted only when a request was sent; deferrals (that one, and an
// open circuit) keep the attempt number (retry.go, deferTask).

// hostPauseCap bounds how long one Retry-After pauses a whole endpoint; the delivery that got
// it is still retried at its own Retry-After (capped by deliver.max_retry_after).
const hostPauseCap = time.Minute

// tenantsRecent is how long after another tenant's delivery an endpoint counts as shared
// (see submit).
const tenantsRecent = 10 * time.Second

// endpoints are the per-endpoint queues.
type endpoints struct {
	s  *Sink
	mu sync.Mutex
	m  map[string]*endpoint // guarded by mu
}

// endpoint is one server's lanes, adaptive concurrency, optional rate limiter and circuit.
type endpoint struct {
	key     string
	e       *endpoints
	limiter *rate.Limiter // nil: no fixed rate limit

	mu        sync.Mutex
	lanes     map[string]*lane // tenant → lane; guarded by mu
	active    *list.List       // of *lane with queued tasks, round-robin order; guarded by mu
	cursor    *list.Element    // next lane to serve; guarded by mu
	queued    int              // tasks in lanes; guarded by mu
	inflight  int              // guarded by mu
	workers   int              // guarded by mu
	limit     float64          // adaptive concurrency in [1, deliver.endpoint_concurrency]; guarded by mu
	best      time.Duration    // near-best latency seen; guarded by mu
	lastCut   time.Time        // guarded by mu
	notBefore time.Time        // Retry-After pause of the whole endpoint; guarded by mu
	failures  int              // consecutive failed attempts; guarded by mu
	openTill  time.Time        // circuit open until; guarded by mu
	waiters   map[*partition]struct{}
	// lastTenant is the tenant of the last submit, mixedAt when the tenant last changed: other
	// tenants use this endpoint too if that was within tenantsRecent. Guarded by mu.
	lastTenant string
	mixedAt    time.Time
	idleSince  time.Time           // when pending became empty; guarded by mu
	pending    map[*task]time.Time // held, queued or in flight → first attempt time; guarded by mu
}

// lane is one tenant's waiting deliveries at one endpoint.
type lane struct {
	tenant   string
	q        []*task
	inflight int
	elem     *list.Element // in endpoint.active while q is not empty
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
		ep = &endpoint{key: key, e: e, lanes: map[string]*lane{}, active: list.New(),
			limit: max(1, math.Ceil(float64(d.EndpointConcurrency)/4)), waiters: map[*partition]struct{}{},
			pending: map[*task]time.Time{}, idleSince: time.Now()}
		if d.EndpointRate > 0 {
			ep.limiter = rate.NewLimiter(rate.Limit(d.EndpointRate), d.EndpointBurst)
		}
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

// sweep releases endpoints that had nothing pending for idle, with their lanes, limiter state
// and (computed at scrape time from this map) metric series.
func (e *endpoints) sweep(now time.Time, idle time.Duration) (released int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, ep := range e.m {
		ep.mu.Lock()
		if len(ep.pending) == 0 && ep.workers == 0 && now.Sub(ep.idleSince) >= idle {
			delete(e.m, k)
			released++
		}
		ep.mu.Unlock()
	}
	return released
}

// sweepLoop runs sweep until ctx is done.
func (e *endpoints) sweepLoop(ctx context.Context, idle time.Duration) {
	t := time.NewTicker(max(idle/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			e.sweep(now, idle)
		}
	}
}

func (ep *endpoint) track(t *task) {
	ep.mu.Lock()
	ep.pending[t] = t.job.FirstAttempt
	ep.mu.Unlock()
}

func (ep *endpoint) untrack(t *task) {
	ep.mu.Lock()
	delete(ep.pending, t)
	if len(ep.pending) == 0 {
		ep.idleSince = time.Now()
	}
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

// concurrency is the endpoint's current adaptive concurrency limit.
func (ep *endpoint) concurrency() int {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return int(ep.limit)
}

// submit queues t in its tenant's lane at its endpoint; it never refuses and never blocks. It
// is called from t's partition goroutine and reports whether the endpoint's queue is now full,
// in which case the partition pauses its fetching until the endpoint posts it an unblock event.
// An open circuit defers t without a request.
func (e *endpoints) submit(t *task, sub *Subscription) (full bool) {
	ep := t.ep
	now := time.Now()
	ep.mu.Lock()
	if now.Before(ep.openTill) {
		till := ep.openTill
		ep.mu.Unlock()
		e.s.deferTask(t, till, errCircuitOpen)
		return false
	}
	t.sub = sub
	ln := ep.lanes[sub.Tenant]
	if ln == nil {
		ln = &lane{tenant: sub.Tenant}
		ep.lanes[sub.Tenant] = ln
	}
	if sub.Tenant != ep.lastTenant {
		ep.lastTenant, ep.mixedAt = sub.Tenant, now
	}
	limit := e.s.cfg.Deliver.EndpointQueue
	if len(ln.q) >= max(1, limit/2) && now.Sub(ep.mixedAt) < tenantsRecent {
		// This tenant's backlog holds half of a queue other tenants share: queued, the rest of
		// it would fill the queue and pause the partitions its neighbours' deliveries come from.
		// Put it off through a retry topic instead (no attempt used), so that one slow or
		// bursting tenant cannot stall the others.
		ep.mu.Unlock()
		e.s.deferTask(t, time.Now().Add(e.s.cfg.Deliver.RetryTiers[0]), errTenantBacklog)
		return false
	}
	ln.q = append(ln.q, t)
	if ln.elem == nil {
		ln.elem = ep.active.PushBack(ln)
	}
	ep.queued++
	full = ep.queued >= limit
	if full {
		ep.waiters[t.part] = struct{}{}
	}
	spawn := ep.workers < int(ep.limit)
	if spawn {
		ep.workers++
	}
	ep.mu.Unlock()
	if spawn {
		e.s.workers.Go(func() { e.work(ep) })
	}
	return full
}

// next takes the next task to send, round-robin over the tenants' lanes, skipping lanes at their
// share of the concurrency while another lane waits. ep.mu is held. It returns nil when there is
// nothing this worker may send.
func (ep *endpoint) next() *task {
	if ep.inflight >= int(ep.limit) || ep.active.Len() == 0 {
		return nil
	}
	share := max(1, int(math.Ceil(ep.limit*ep.e.s.cfg.Deliver.EndpointTenantShare)))
	alone := ep.active.Len() == 1
	el := ep.cursor
	if el == nil {
		el = ep.active.Front()
	}
	for range ep.active.Len() {
		ln := el.Value.(*lane)
		nxt := el.Next()
		if nxt == nil {
			nxt = ep.active.Front()
		}
		if ln.inflight < share || alone {
			t := ln.q[0]
			ln.q[0] = nil
			ln.q = ln.q[1:]
			ln.inflight++
			ep.inflight++
			ep.queued--
			ep.cursor = nxt
			if len(ln.q) == 0 {
				if nxt == el {
					ep.cursor = nil
				}
				ep.active.Remove(el)
				ln.elem = nil
				ln.q = nil
			}
			return t
		}
		el = nxt
	}
	return nil
}

// done ends a task taken by next and adapts the concurrency to its request's result (a nil:
// no request was sent). ep.mu is held.
func (ep *endpoint) done(tenant string, a *attempt, now time.Time) {
	ep.inflight--
	if ln := ep.lanes[tenant]; ln != nil {
		ln.inflight--
		if ln.inflight == 0 && ln.elem == nil {
			delete(ep.lanes, tenant)
		}
	}
	if a == nil {
		return
	}
	d := ep.e.s.cfg.Deliver
	switch {
	case a.err == nil:
		ep.failures = 0
		if ep.best == 0 || a.latency < ep.best {
			ep.best = a.latency
		} else {
			ep.best += (a.latency - ep.best) / 256 // let the baseline follow a receiver that got slower for good
		}
		saturated := ep.inflight+1 >= int(ep.limit)
		if saturated && a.latency <= 2*ep.best+20*time.Millisecond {
			ep.limit = min(float64(d.EndpointConcurrency), ep.limit+1/ep.limit)
		}
	case overloaded(*a):
		if a.status == 0 || a.status >= 500 {
			ep.countFailure(now)
		}
		if a.err.RetryAfter > 0 {
			ep.notBefore = maxTime(ep.notBefore, now.Add(min(a.err.RetryAfter, hostPauseCap)))
		}
		if now.Sub(ep.lastCut) > max(ep.best, 10*time.Millisecond) {
			ep.limit = max(1, ep.limit*0.7)
			ep.lastCut = now
		}
	case a.err.Kind == Retryable && (a.status == 0 || a.status >= 500):
		ep.countFailure(now)
	}
}

func (ep *endpoint) countFailure(now time.Time) {
	ep.failures++
	if ep.failures >= ep.e.s.cfg.Deliver.CircuitFailures {
		ep.openTill = now.Add(ep.e.s.cfg.Deliver.CircuitCooldown)
	}
}

// overloaded: the receiver said it is overloaded (429, 503) or did not answer in time or at all.
func overloaded(a attempt) bool {
	if a.err == nil || a.err.Kind != Retryable {
		return false
	}
	return a.status == 429 || a.status == 503 || a.status == 0
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// unblock returns the partitions waiting for ep's queue once it is below half. ep.mu is held.
func (ep *endpoint) unblock() []*partition {
	if len(ep.waiters) == 0 || ep.queued >= max(1, ep.e.s.cfg.Deliver.EndpointQueue/2) {
		return nil
	}
	out := make([]*partition, 0, len(ep.waiters))
	for p := range ep.waiters {
		out = append(out, p)
	}
	clear(ep.waiters)
	return out
}

// work sends ep's queued tasks until there is none it may send, or the sink stops. Workers are
// started by submit up to the adaptive limit; a worker above a lowered limit leaves.
func (e *endpoints) work(ep *endpoint) {
	ep.mu.Lock()
	for {
		if e.s.ctx.Err() != nil || ep.workers > int(ep.limit) {
			break
		}
		t := ep.next()
		if t == nil {
			break
		}
		wake := ep.unblock()
		pause := time.Until(ep.notBefore)
		open := time.Now().Before(ep.openTill)
		till := ep.openTill
		ep.mu.Unlock()
		for _, p := range wake {
			p.post(event{unblock: ep})
		}
		e.do(ep, t, pause, open, till)
		ep.mu.Lock()
		if ep.workers < int(ep.limit) && ep.queued > ep.workers {
			ep.workers++ // the limit grew: put it to use without waiting for the next submit
			e.s.workers.Go(func() { e.work(ep) })
		}
	}
	ep.workers--
	ep.mu.Unlock()
}

// do makes one attempt of t, after the endpoint's Retry-After pause and rate limit, unless the
// circuit is open (then t is deferred without a request).
func (e *endpoints) do(ep *endpoint, t *task, pause time.Duration, open bool, openTill time.Time) {
	s := e.s
	tenant := t.sub.Tenant
	ended := func(a *attempt) {
		ep.mu.Lock()
		ep.done(tenant, a, time.Now())
		ep.mu.Unlock()
	}
	if open {
		ended(nil)
		s.deferTask(t, openTill, errCircuitOpen)
		return
	}
	if pause > 0 {
		select {
		case <-s.ctx.Done():
			ended(nil)
			return
		case <-time.After(pause):
		}
	}
	if ep.limiter != nil {
		if err := ep.limiter.Wait(s.ctx); err != nil {
			ended(nil)
			return // stopping
		}
	}
	sub := s.idx.get(t.job.Subscription)
	switch {
	case sub == nil:
		ended(nil)
		s.finishWithout(t, OutcomeUnknown, "subscription no longer exists")
		return
	case stopsDelivery(sub, &t.snap, s.cfg.Deliver.SubscriptionLifetime == config.LifetimeCommitLSN):
		ended(nil)
		s.finishWithout(t, OutcomeDisabledTarget, sub.DisabledReason)
		return
	}
	var a attempt
	if s.tracer != nil {
		a = s.tracedSend(sub, t)
	} else {
		a = s.sender.send(s.ctx, sub, &t.snap, t.webhookID(), t.job.Attempt)
	}
	ended(&a)
	if s.ctx.Err() != nil {
		return
	}
	s.finish(t, sub, a)
}
