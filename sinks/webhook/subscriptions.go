package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/walhook/walhook/internal/redact"
)

// NotifyChannel is the PostgreSQL channel the hook.subscription trigger notifies on.
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

type indexKey struct{ tenant, eventType string }

// index is the in-memory view of hook.subscription: (tenant, event type) → subscriptions,
// disabled ones included so deliveries to them can be logged as "disabled target".
type index struct {
	mu     sync.RWMutex
	byKey  map[indexKey][]*Subscription // guarded by mu
	byUUID map[string]*Subscription     // guarded by mu
	loaded time.Time                    // guarded by mu
}

func newIndex() *index {
	return &index{byKey: map[indexKey][]*Subscription{}, byUUID: map[string]*Subscription{}}
}

// match returns the subscriptions (enabled or not) of tenant and event type. The slice is
// shared: do not modify it.
func (x *index) match(tenant, eventType string) []*Subscription {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.byKey[indexKey{tenant, eventType}]
}

func (x *index) get(uuid string) *Subscription {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.byUUID[uuid]
}

func (x *index) replace(subs []*Subscription) {
	byKey := make(map[indexKey][]*Subscription, len(subs))
	byUUID := make(map[string]*Subscription, len(subs))
	for _, s := range subs {
		k := indexKey{s.Tenant, s.EventType}
		byKey[k] = append(byKey[k], s)
		byUUID[s.UUID] = s
	}
	x.mu.Lock()
	x.byKey, x.byUUID, x.loaded = byKey, byUUID, time.Now()
	x.mu.Unlock()
}

// update replaces one subscription by a modified copy (the sink disabling it or noting a
// failure) until the next reload brings the row.
func (x *index) update(uuid string, fn func(*Subscription)) {
	x.mu.Lock()
	defer x.mu.Unlock()
	old := x.byUUID[uuid]
	if old == nil {
		return
	}
	c := *old
	fn(&c)
	x.byUUID[uuid] = &c
	k := indexKey{c.Tenant, c.EventType}
	list := append([]*Subscription(nil), x.byKey[k]...)
	for i := range list {
		if list[i].UUID == uuid {
			list[i] = &c
		}
	}
	x.byKey[k] = list
}

func (x *index) counts() (enabled, disabled int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for _, s := range x.byUUID {
		if s.Enabled {
			enabled++
		} else {
			disabled++
		}
	}
	return enabled, disabled
}

const selectSubscriptions = `SELECT s.id, s.uuid::text, s.application_id, s.tenant_id, s.event_type, s.url, s.method,
	s.headers, s.format, s.ordered, s.is_enabled, s.secret, coalesce(s.previous_secret, ''),
	coalesce(s.previous_secret_expires_at, 'epoch'), coalesce(s.failing_since, 'epoch'),
	coalesce(s.disabled_reason, ''), s.created_at, s.oversize
FROM hook.subscription s`

func scanSubscription(row pgx.Row) (*Subscription, error) {
	var s Subscription
	var headers []byte
	err := row.Scan(&s.ID, &s.UUID, &s.AppID, &s.Tenant, &s.EventType, &s.URL, &s.Method, &headers, &s.Format,
		&s.Ordered, &s.Enabled, &s.Secret, &s.PreviousSecret, &s.PreviousExpiresAt, &s.FailingSince,
		&s.DisabledReason, &s.CreatedAt, &s.Oversize)
	if err != nil {
		return nil, err
	}
	if s.FailingSince.Unix() == 0 {
		s.FailingSince = time.Time{}
	}
	if len(headers) > 0 {
		if err := json.Unmarshal(headers, &s.Headers); err != nil {
			return nil, fmt.Errorf("subscription %s: headers %s are not a JSON object of strings: %w", s.UUID, headers, err)
		}
	}
	return &s, nil
}

// loadAll reads every subscription.
func loadAll(ctx context.Context, d *db) ([]*Subscription, error) {
	var out []*Subscription
	err := d.with(ctx, func(c *pgx.Conn) error {
		var err error
		out, err = loadAllConn(ctx, c)
		return err
	})
	return out, err
}

func loadAllConn(ctx context.Context, c dbConn) ([]*Subscription, error) {
	rows, err := c.Query(ctx, selectSubscriptions+" ORDER BY s.id")
	if err != nil {
		return nil, fmt.Errorf("webhook: load hook.subscription: %w; apply the hook schema (internal/demo/schema.sql) to postgres.url", err)
	}
	defer rows.Close()
	var out []*Subscription
	for rows.Next() {
		s, err := scanSubscription(rows)
		if err != nil {
			return nil, fmt.Errorf("webhook: read hook.subscription: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// listener keeps an index current: LISTEN for NOTIFYs of the subscription trigger, reload on
// each (coalesced), and reload every interval as a safety net. It owns its connection.
type listener struct {
	url      string
	db       *db
	idx      *index
	interval time.Duration
	log      *zap.Logger
	onReload func()
}

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
	// Reload after LISTEN so no change between the last load and now is missed.
	if err := l.reload(ctx); err != nil {
		return err
	}
	next := time.Now().Add(l.interval)
	for {
		wctx, cancel := context.WithDeadline(ctx, next)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("wait for notification: %w", err)
		}
		if err == nil {
			l.drain(ctx, conn)
		}
		if err := l.reload(ctx); err != nil {
			return err
		}
		next = time.Now().Add(l.interval)
	}
}

// drain swallows notifications already queued so a burst of changes costs one reload.
func (l *listener) drain(ctx context.Context, conn *pgx.Conn) {
	for {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
		_, err := conn.WaitForNotification(dctx)
		cancel()
		if err != nil {
			return
		}
	}
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
