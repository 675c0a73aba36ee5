package cdc

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// lockPoll is how often a standby instance retries the advisory lock.
const lockPoll = time.Second

// acquireLock connects and takes the session advisory lock of the slot, polling every second
// while another walhook cdc holds it. The lock lives as long as the returned connection:
// whoever holds the connection is the active reader. The slot's own exclusivity (one
// walsender per slot) backs it up.
func (s *Stage) acquireLock(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, s.cfg.Postgres.URL)
	if err != nil {
		return nil, fmt.Errorf("cdc: connect to PostgreSQL: %w; check postgres.url / WALHOOK_PG_URL", err)
	}
	key := "walhook.cdc:" + s.cfg.Postgres.Slot
	t := time.NewTicker(lockPoll)
	defer t.Stop()
	var since time.Time
	for {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, key).Scan(&ok); err != nil {
			_ = conn.Close(context.Background())
			return nil, fmt.Errorf("cdc: take advisory lock %q: %w", key, err)
		}
		if ok {
			s.metrics.standby.Set(0)
			if !since.IsZero() {
				s.log.Info("took over the slot: the previous reader is gone",
					zap.String("slot", s.cfg.Postgres.Slot), zap.Duration("waited", time.Since(since)))
			}
			return conn, nil
		}
		if since.IsZero() {
			since = time.Now()
			s.metrics.standby.Set(1)
			s.log.Info("standby: another walhook cdc holds the slot's lock; waiting to take over",
				zap.String("slot", s.cfg.Postgres.Slot), zap.String("lock", key))
		}
		select {
		case <-ctx.Done():
			_ = conn.Close(context.Background())
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
