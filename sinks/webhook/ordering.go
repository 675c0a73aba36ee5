package webhook

// Ordered subscriptions (--ordered) receive each root's versions in order. Their tasks form a
// chain per (subscription, root key) inside the partition of the snapshot topic, where a root's
// versions arrive in order: only the head of a chain is in flight; the next version starts when
// the head is delivered or finished for good (dead-lettered, disabled). A failed head is retried
// in place (held by the partition until its backoff is due) instead of through a retry topic, so
// no later version can overtake it; other roots keep flowing. While a chain's head is retried
// the partition's commit watermark stays below it, so after a restart the chain is rebuilt from
// the log in the same order.

type chainKey struct{ sub, root string }

type chain struct {
	waiting []*task // later versions, in offset order
}

func (p *partition) startOrdered(t *task) {
	k := chainKey{t.job.Subscription, t.snap.Key}
	if c, ok := p.chains[k]; ok {
		c.waiting = append(c.waiting, t)
		return
	}
	p.chains[k] = &chain{}
	p.dispatch(t)
}

func (p *partition) finishOrdered(t *task) {
	k := chainKey{t.job.Subscription, t.snap.Key}
	c, ok := p.chains[k]
	if !ok {
		return
	}
	if len(c.waiting) == 0 {
		delete(p.chains, k)
		return
	}
	next := c.waiting[0]
	c.waiting = c.waiting[1:]
	p.dispatch(next)
}
