package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/redact"
)

// NotifyChannel is the PostgreSQL channel the hook.subscription trigger notifies on. Payloads
// are a changed row's uuid, or a sink's sync-round marker starting with "sync:" (skip those).
const NotifyChannel = "walhook_hook_subscription"

// Subscription is one row of hook.subscription as the sink uses it. Values are immutable: a
// change replaces the whole value in the index.
type Subscription struct {
	ID        int64
	UUID      string
	AppID     int64
	Tenant    string
	EventType string // underscore spelling
	URL       string
	Method    string
	Headers   map[string]string
	Format    string // "bare" or "envelope"
	Ordered   bool
	// Oversize is OversizeDeadLetter or OversizeThin: what a delivery above
	// deliver.max_payload_bytes becomes.
	Oversize string
	Enabled  bool
	// Secret and PreviousSecret are whsec_ secrets. Never log them.
	Secret            string
	PreviousSecret    string
	PreviousExpiresAt time.Time
	FailingSince      time.Time // zero when not failing
	DisabledReason    string
	CreatedAt         time.Time
	// EnabledLSN and DisabledLSN bound the subscription's lifetime in the WAL (see match and
	// stopsDelivery); 0 when unset.
	EnabledLSN  uint64
	DisabledLSN uint64
	// PastLifetimes are the earlier (enabled, disabled] LSN ranges of a subscription that was
	// disabled and enabled again, oldest first (the latest 16, hook.subscription.past_lifetimes).
	PastLifetimes []Lifetime
}

// Lifetime is one enabled period of a subscription in the WAL: versions committed after Enabled
// and not after Disabled.
type Lifetime struct{ Enabled, Disabled uint64 }

// livedAt: l falls in one of the subscription's earlier lifetimes.
func (s *Subscription) livedAt(l uint64) bool {
	for _, p := range s.PastLifetimes {
		if l > p.Enabled && l <= p.Disabled {
			return true
		}
	}
	return false
}

// signer returns the keys the subscription signs with at now.
func (s *Subscription) signer(now time.Time) (signer, error) {
	key, err := decodeSecret(s.Secret)
	if err != nil {
		return signer{}, fmt.Errorf("subscription %s: %w", s.UUID, err)
	}
	sg := signer{keys: [][]byte{key}}
	if s.PreviousSecret != "" && now.Before(s.PreviousExpiresAt) {
		if prev, err := decodeSecret(s.PreviousSecret); err == nil {
			sg.keys = append(sg.keys, prev)
		}
	}
	return sg, nil
}

// String never includes the secrets, nor the URL's password or query values.
func (s *Subscription) String() string {
	return fmt.Sprintf("subscription %s (tenant %s, %s → %s)", s.UUID, s.Tenant, s.EventType, redact.URL(s.URL))
}

// The subscription lifetime rule: a subscription receives the versions whose source transaction
// committed after it was enabled and not after it was disabled. EnabledLSN and DisabledLSN are
// WAL positions taken inside the enabling and disabling transactions (hook.subscription_lifetime
// in the schema); a snapshot carries its source transaction's commit LSN. Snapshots without one
// (CommitLSN 0, written by other tools) fall back to the subscription state when they are read.

// stopsDelivery: sub is disabled and snap is not one of the versions it still gets (those
// committed before the disable, unless the sink itself disabled it: 410 Gone or auto-disable
// stop every delivery at once).
func stopsDelivery(sub *Subscription, snap *avro.Snapshot, byLSN bool) bool {
	if sub.Enabled {
		return false
	}
	l := snap.CommitLSN
	if byLSN && l != 0 && sub.livedAt(l) {
		return false
	}
	return !byLSN || l == 0 || sub.DisabledLSN == 0 || l > sub.DisabledLSN || disabledBySink(sub.DisabledReason)
}

// coversCommit: a snapshot committed at l is one the subscription gets (or, disabled, is logged
// for): after its current enable or inside an earlier lifetime.
func coversCommit(sub *Subscription, l uint64, byLSN bool) bool {
	return !byLSN || l == 0 || l > sub.EnabledLSN || sub.livedAt(l)
}

func disabledBySink(reason string) bool {
	return strings.HasPrefix(reason, "auto-disabled") || strings.Contains(reason, "410 Gone")
}

type indexKey struct{ tenant, eventType string }

// index is the in-memory view of hook.subscription. The hot map holds the enabled subscriptions
// by (tenant, event type); disabled ones are kept in the cold map only for
// coldRetention after the sink learned of the disable (they still get the versions committed
// before it, and later ones are logged as "disabled target"), then forgotten.
//
// synced is the WAL position up to which every committed subscription change has been applied:
// a snapshot committed at or below it can be matched exactly (see waitSynced).
type index struct {
	mu       sync.RWMutex
	hot      map[indexKey][]*Subscription // guarded by mu
	cold     map[indexKey][]*Subscription // guarded by mu
	byUUID   map[string]*Subscription     // guarded by mu
	coldAt   map[string]time.Time         // guarded by mu; when a cold subscription went cold
	loaded   time.Time                    // guarded by mu
	synced   uint64                       // guarded by mu
	walEnd   uint64                       // guarded by mu; the latest WAL position read
	advanced chan struct{}                // guarded by mu; closed and replaced when synced advances
	wanted   atomic.Bool                  // a partition waits for synced to advance
	foreign  atomic.Bool                  // snapshots' LSNs were found beyond this cluster's WAL
}

// coldRetention is how long a disabled subscription stays in memory.
const coldRetention = time.Hour

func newIndex() *index {
	return &index{hot: map[indexKey][]*Subscription{}, cold: map[indexKey][]*Subscription{},
		byUUID: map[string]*Subscription{}, coldAt: map[string]time.Time{}, advanced: make(chan struct{})}
}

// match returns the subscriptions of tenant and event type that may get a snapshot: the enabled
// ones and the recently disabled ones. The slices are shared: do not modify them.
func (x *index) match(tenant, eventType string) (enabled, disabled []*Subscription) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	k := indexKey{tenant, eventType}
	return x.hot[k], x.cold[k]
}

func (x *index) get(uuid string) *Subscription {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.byUUID[uuid]
}

// replace swaps in a full load.
func (x *index) replace(subs []*Subscription) {
	now := time.Now()
	x.mu.Lock()
	defer x.mu.Unlock()
	old := x.coldAt
	x.hot, x.cold = make(map[indexKey][]*Subscription, len(subs)), map[indexKey][]*Subscription{}
	x.byUUID = make(map[string]*Subscription, len(subs))
	x.coldAt = map[string]time.Time{}
	for _, s := range subs {
		if !s.Enabled {
			at, ok := old[s.UUID]
			if !ok {
				at = now
			}
			x.coldAt[s.UUID] = at
		}
		x.insert(s)
	}
	x.loaded = now
}

// apply applies changed rows and removes deleted uuids: an incremental reload.
func (x *index) apply(changed []*Subscription, deleted []string) {
	now := time.Now()
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, s := range changed {
		x.remove(s.UUID)
		if s.Enabled {
			// Enabled again: no longer cold, or forgetCold would take it out of the hot map
			// once its old disable is coldRetention old (its snapshots then matching nothing).
			delete(x.coldAt, s.UUID)
		} else {
			x.coldAt[s.UUID] = now
		}
		x.insert(s)
	}
	for _, u := range deleted {
		x.remove(u)
	}
}

// insert adds s; x.mu is held and s.UUID is not in the index.
func (x *index) insert(s *Subscription) {
	m := x.hot
	if !s.Enabled {
		m = x.cold
		if _, ok := x.coldAt[s.UUID]; !ok {
			x.coldAt[s.UUID] = time.Now()
		}
	}
	k := indexKey{s.Tenant, s.EventType}
	m[k] = append(m[k][:len(m[k]):len(m[k])], s) // copy on write: match's callers hold the old slice
	x.byUUID[s.UUID] = s
}

// remove drops uuid; x.mu is held.
func (x *index) remove(uuid string) {
	old := x.byUUID[uuid]
	if old == nil {
		return
	}
	delete(x.byUUID, uuid)
	m := x.hot
	if !old.Enabled {
		m = x.cold
	}
	k := indexKey{old.Tenant, old.EventType}
	list := make([]*Subscription, 0, len(m[k]))
	for _, s := range m[k] {
		if s.UUID != uuid {
			list = append(list, s)
		}
	}
	if len(list) == 0 {
		delete(m, k)
	} else {
		m[k] = list
	}
	if old.Enabled {
		delete(x.coldAt, uuid)
	}
}

// update replaces one subscription by a modified copy (the sink disabling it or noting a
// failure) until a reload brings the row.
func (x *index) update(uuid string, fn func(*Subscription)) {
	x.mu.Lock()
	defer x.mu.Unlock()
	old := x.byUUID[uuid]
	if old == nil {
		return
	}
	c := *old
	fn(&c)
	x.remove(uuid)
	x.insert(&c)
}

// forgetCold drops disabled subscriptions that went cold more than retention ago.
func (x *index) forgetCold(now time.Time, retention time.Duration) (n int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for u, at := range x.coldAt {
		if now.Sub(at) >= retention {
			x.remove(u)
			delete(x.coldAt, u)
			n++
		}
	}
	return n
}

func (x *index) counts() (enabled, disabled int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.byUUID) - len(x.coldAt), len(x.coldAt)
}

// setSynced records that every subscription change committed before lsn is applied, and that
// the WAL reached walEnd.
func (x *index) setSynced(lsn, walEnd uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.walEnd = max(x.walEnd, walEnd)
	x.synced = max(x.synced, lsn)
	close(x.advanced) // every round wakes the waiters: they check walEnd too
	x.advanced = make(chan struct{})
}

// waitSynced waits until every subscription change committed before lsn is applied, so that
// a snapshot committed at lsn is matched against the subscriptions as they were at its commit.
// It gives up (reporting false) after timeout, or at once when lsn is beyond the WAL of the
// hook database: the snapshots then come from another PostgreSQL cluster, whose LSNs say
// nothing about this one's.
func (x *index) waitSynced(ctx context.Context, lsn uint64, timeout time.Duration) bool {
	var deadline <-chan time.Time
	for wakeups := 0; ; wakeups++ {
		x.mu.RLock()
		synced, walEnd, ch := x.synced, x.walEnd, x.advanced
		x.mu.RUnlock()
		if synced >= lsn {
			if wakeups > 0 {
				x.foreign.Store(false)
			}
			return true
		}
		if walEnd != 0 && lsn > walEnd && (wakeups >= 2 || x.foreign.Load()) {
			// walEnd was read after we started waiting (or was, for an earlier snapshot like
			// this one): lsn is not of this cluster, and waiting for it would only slow every
			// snapshot down.
			x.foreign.Store(true)
			return false
		}
		if deadline == nil {
			t := time.NewTimer(timeout)
			defer t.Stop()
			deadline = t.C
		}
		x.wanted.Store(true)
		select {
		case <-ctx.Done():
			return false
		case <-deadline:
			return false
		case <-ch:
		}
	}
}

const selectSubscriptions = `SELECT s.id, s.uuid::text, s.application_id, s.tenant_id, s.event_type, s.url, s.method,
	s.headers, s.format, s.ordered, s.is_enabled, s.secret, coalesce(s.previous_secret, ''),
	coalesce(s.previous_secret_expires_at, 'epoch'), coalesce(s.failing_since, 'epoch'),
	coalesce(s.disabled_reason, ''), s.created_at, s.oversize, ` + lifetimeColumns + `
FROM hook.subscription s`

// lifetimeColumns are the subscription's lifetime LSNs as numbers (0 when unset).
const lifetimeColumns = `coalesce((enabled_lsn - '0/0')::bigint, 0), coalesce((disabled_lsn - '0/0')::bigint, 0),
	array(SELECT (l - '0/0')::bigint FROM unnest(past_lifetimes) l)`

func scanSubscription(row pgx.Row) (*Subscription, error) {
	var s Subscription
	var headers []byte
	var past []uint64
	err := row.Scan(&s.ID, &s.UUID, &s.AppID, &s.Tenant, &s.EventType, &s.URL, &s.Method, &headers, &s.Format,
		&s.Ordered, &s.Enabled, &s.Secret, &s.PreviousSecret, &s.PreviousExpiresAt, &s.FailingSince,
		&s.DisabledReason, &s.CreatedAt, &s.Oversize, &s.EnabledLSN, &s.DisabledLSN, &past)
	if err != nil {
		return nil, err
	}
	if len(past) >= 2 {
		s.PastLifetimes = make([]Lifetime, 0, len(past)/2)
		for i := 0; i+1 < len(past); i += 2 {
			s.PastLifetimes = append(s.PastLifetimes, Lifetime{Enabled: past[i], Disabled: past[i+1]})
		}
	}
	if s.FailingSince.Unix() == 0 {
		s.FailingSince = time.Time{}
	}
	if len(headers) > 0 {
		if err := json.Unmarshal(headers, &s.Headers); err != nil {
			return nil, fmt.Errorf("subscription %s: headers %s are not a JSON object of strings: %w", s.UUID, headers, err)
		}
		if len(s.Headers) == 0 {
			s.Headers = nil // most have none: no empty map each
		}
	}
	return &s, nil
}

// loadAll reads the subscriptions the sink keeps: the enabled ones and those disabled within
// coldRetention.
func loadAll(ctx context.Context, d *db) ([]*Subscription, error) {
	var out []*Subscription
	err := d.with(ctx, func(c *pgx.Conn) error {
		var err error
		out, err = querySubscriptions(ctx, c, selectSubscriptions+` WHERE s.is_enabled
			OR s.disabled_at > now() - make_interval(secs => $1) ORDER BY s.id`, coldRetention.Seconds())
		return err
	})
	return out, err
}

// loadAllConn reads every subscription.
func loadAllConn(ctx context.Context, c dbConn) ([]*Subscription, error) {
	return querySubscriptions(ctx, c, selectSubscriptions+" ORDER BY s.id")
}

func querySubscriptions(ctx context.Context, c dbConn, sql string, args ...any) ([]*Subscription, error) {
	rows, err := c.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("webhook: load hook.subscription: %w; apply the hook schema (internal/demo/schema.sql) to postgres.url", err)
	}
	defer rows.Close()
	var out []*Subscription
	// Interned: at 100,000 subscriptions the repeated tenants, event types, methods and
	// formats would otherwise be a copy each.
	intern := map[string]string{}
	in := func(v *string) {
		if x, ok := intern[*v]; ok {
			*v = x
		} else {
			intern[*v] = *v
		}
	}
	for rows.Next() {
		s, err := scanSubscription(rows)
		if err != nil {
			return nil, fmt.Errorf("webhook: read hook.subscription: %w", err)
		}
		in(&s.Tenant)
		in(&s.EventType)
		in(&s.Method)
		in(&s.Format)
		out = append(out, s)
	}
	return out, rows.Err()
}

// loadByUUID reads the given subscriptions; uuids without a row are returned as deleted.
func loadByUUID(ctx context.Context, d *db, uuids []string) (changed []*Subscription, deleted []string, err error) {
	err = d.with(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, selectSubscriptions+" WHERE s.uuid = ANY($1::text[]::uuid[])", uuids)
		if err != nil {
			return fmt.Errorf("webhook: load changed subscriptions: %w", err)
		}
		defer rows.Close()
		seen := make(map[string]bool, len(uuids))
		for rows.Next() {
			s, err := scanSubscription(rows)
			if err != nil {
				return fmt.Errorf("webhook: read hook.subscription: %w", err)
			}
			changed = append(changed, s)
			seen[s.UUID] = true
		}
		for _, u := range uuids {
			if !seen[u] {
				deleted = append(deleted, u)
			}
		}
		return rows.Err()
	})
	return changed, deleted, err
}

// listener keeps an index current. It LISTENs for the subscription trigger's NOTIFYs (payload:
// the row's uuid) and reloads just the changed rows, fully reloads every interval as a safety
// net, and, when a partition waits for it (index.waitSynced), runs a sync round: one statement
// reads the WAL position W and sends a marker NOTIFY on the same channel. PostgreSQL delivers
// notifications in commit order, and every transaction whose commit LSN is below W queued its
// notifications before the marker's transaction did: once the marker arrives, every change
// committed before W has been notified, so after applying them the index is current up to W.
// No timing assumption is involved. It owns its connection; the index's loads go through db.
type listener struct {
	url      string
	db       *db
	idx      *index
	interval time.Duration
	sync     time.Duration
	log      *zap.Logger
	onReload func()
}

// syncPrefix starts the payload of a sync round's marker; other payloads are uuids.
const syncPrefix = "sync:"

// run blocks until ctx is done. Connection failures are retried with backoff; the index keeps
// its last good contents meanwhile.
func (l *listener) run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := l.listen(ctx)
		if ctx.Err() != nil {
			return nil
		}
		l.log.Warn("subscription listener failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
	return nil
}

func (l *listener) listen(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, l.url)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return fmt.Errorf("LISTEN %s: %w", NotifyChannel, err)
	}
	// Fully reload after LISTEN so no change between the last load and now is missed.
	if err := l.reload(ctx); err != nil {
		return err
	}
	marker := fmt.Sprintf("%s%d:%x:", syncPrefix, conn.PgConn().PID(), rand.Uint64())
	rounds := 0
	nextFull := time.Now().Add(l.interval)
	changed := map[string]struct{}{}
	for {
		// Wake every sync interval at the latest: a partition may start waiting for a round
		// meanwhile (index.wanted), and that must not wait for the next notification.
		wctx, cancel := context.WithDeadline(ctx, minTime(nextFull, time.Now().Add(l.sync)))
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("wait for notification: %w", err)
		}
		if err == nil {
			note(changed, n.Payload)
			l.drain(ctx, conn, changed)
		}
		if time.Now().After(nextFull) {
			clear(changed)
			if err := l.reload(ctx); err != nil {
				return err
			}
			nextFull = time.Now().Add(l.interval)
		}
		round := l.idx.wanted.Swap(false)
		var w uint64
		if round {
			rounds++
			if w, err = l.syncRound(ctx, conn, marker+strconv.Itoa(rounds), changed); err != nil {
				return err
			}
		}
		if len(changed) > 0 {
			if err := l.applyChanged(ctx, changed); err != nil {
				return err
			}
		}
		if round {
			l.idx.setSynced(w, w)
		}
	}
}

// syncRound reads the WAL position and collects every change notified before it (see listener).
func (l *listener) syncRound(ctx context.Context, conn *pgx.Conn, marker string, into map[string]struct{}) (uint64, error) {
	var w uint64
	if err := conn.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - '0/0')::bigint FROM (SELECT pg_notify($1, $2)) n`,
		NotifyChannel, marker).Scan(&w); err != nil {
		return 0, fmt.Errorf("sync round: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		n, err := conn.WaitForNotification(wctx)
		if err != nil {
			return 0, fmt.Errorf("sync round: waiting for its own notification: %w", err)
		}
		if n.Payload == marker {
			return w, nil
		}
		note(into, n.Payload)
	}
}

// note adds a notified uuid to set; sync markers (ours or other sinks') are not uuids.
func note(set map[string]struct{}, payload string) {
	if !strings.HasPrefix(payload, syncPrefix) {
		set[payload] = struct{}{}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// drain collects notifications already queued so a burst of changes costs one load.
func (l *listener) drain(ctx context.Context, conn *pgx.Conn, into map[string]struct{}) {
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Millisecond)
		n, err := conn.WaitForNotification(dctx)
		cancel()
		if err != nil {
			return
		}
		note(into, n.Payload)
	}
}

func (l *listener) applyChanged(ctx context.Context, set map[string]struct{}) error {
	uuids := make([]string, 0, len(set))
	for u := range set {
		uuids = append(uuids, u)
	}
	changed, deleted, err := loadByUUID(ctx, l.db, uuids)
	if err != nil {
		return err
	}
	clear(set)
	l.idx.apply(changed, deleted)
	if l.onReload != nil {
		l.onReload()
	}
	return nil
}

func (l *listener) reload(ctx context.Context) error {
	subs, err := loadAll(ctx, l.db)
	if err != nil {
		return err
	}
	l.idx.replace(subs)
	if l.onReload != nil {
		l.onReload()
	}
	return nil
}
