package webhook

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// healthFlush is how often noted health marks are written.
const healthFlush = 200 * time.Millisecond

// healthWriter writes subscription health to hook.subscription off the delivery path: the sink
// notes a transition (a failing streak began or ended, the sink disabled a subscription) in
// memory and moves on; run writes the latest mark of each subscription every healthFlush, all of
// them in one round trip, on its own connection. A subscription that flaps within a flush
// interval costs at most one write, and none when it ends where it started.
type healthWriter struct {
	db  *db
	log *zap.Logger

	mu       sync.Mutex
	marks    map[string]time.Time // guarded by mu; uuid → failing since, zero to clear
	disables map[string]string    // guarded by mu; uuid → reason
}

func newHealthWriter(url string, log *zap.Logger) *healthWriter {
	return &healthWriter{db: &db{url: url}, log: log, marks: map[string]time.Time{}, disables: map[string]string{}}
}

// failing notes that uuid's deliveries have been failing since at (zero: no longer failing).
func (w *healthWriter) failing(uuid string, at time.Time) {
	w.mu.Lock()
	w.marks[uuid] = at
	w.mu.Unlock()
}

// disable notes that the sink disabled uuid.
func (w *healthWriter) disable(uuid, reason string) {
	w.mu.Lock()
	w.disables[uuid] = reason
	w.mu.Unlock()
}

// run flushes every healthFlush until ctx is done, then a last time.
func (w *healthWriter) run(ctx context.Context) {
	defer w.db.Close()
	t := time.NewTicker(healthFlush)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			w.flush(fctx)
			cancel()
			return
		case <-t.C:
			w.flush(ctx)
		}
	}
}

func (w *healthWriter) flush(ctx context.Context) {
	w.mu.Lock()
	marks, disables := w.marks, w.disables
	if len(marks)+len(disables) == 0 {
		w.mu.Unlock()
		return
	}
	w.marks, w.disables = map[string]time.Time{}, map[string]string{}
	w.mu.Unlock()

	b := &pgx.Batch{}
	var setIDs, clearIDs []string
	var setAt []time.Time
	for u, at := range marks {
		if at.IsZero() {
			clearIDs = append(clearIDs, u)
		} else {
			setIDs, setAt = append(setIDs, u), append(setAt, at)
		}
	}
	if len(setIDs) > 0 {
		b.Queue(`UPDATE hook.subscription s SET failing_since = v.at
			FROM unnest($1::text[], $2::timestamptz[]) AS v(uuid, at)
			WHERE s.uuid = v.uuid::uuid AND s.failing_since IS NULL`, setIDs, setAt)
	}
	if len(clearIDs) > 0 {
		b.Queue(`UPDATE hook.subscription SET failing_since = NULL
			WHERE uuid = ANY($1::text[]::uuid[]) AND failing_since IS NOT NULL`, clearIDs)
	}
	for u, reason := range disables {
		b.Queue(`UPDATE hook.subscription SET is_enabled = false, disabled_at = now(), disabled_reason = $2,
			updated_at = now() WHERE uuid = $1::uuid AND is_enabled`, u, reason)
	}
	err := w.db.with(ctx, func(c *pgx.Conn) error { return c.SendBatch(ctx, b).Close() })
	if err == nil {
		return
	}
	if ctx.Err() == nil {
		w.log.Warn("webhook: writing subscription health to hook.subscription failed; retrying next flush", zap.Error(err),
			zap.Int("marks", len(marks)), zap.Int("disables", len(disables)))
	}
	// Put them back under newer marks noted meanwhile.
	w.mu.Lock()
	for u, at := range marks {
		if _, newer := w.marks[u]; !newer {
			w.marks[u] = at
		}
	}
	for u, r := range disables {
		if _, newer := w.disables[u]; !newer {
			w.disables[u] = r
		}
	}
	w.mu.Unlock()
}
