package cdc

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// lockCheck is how often the lock connection is checked when heartbeats are disabled.
const lockCheck = 5 * time.Second

// heartbeat owns the lock connection: every HeartbeatInterval it writes a non-transactional
// logical decoding message through it, which travels through the slot like a change, so the
// confirmed LSN advances while the model's tables are idle and other tables fill the WAL. An
// error means the connection (and with it the advisory lock) is gone: the stage must stop, as
// a standby may take over.
func (s *Stage) heartbeat(ctx context.Context, conn *pgx.Conn) error {
	every, sql := s.cfg.CDC.HeartbeatInterval, `SELECT pg_logical_emit_message(false, '`+heartbeatPrefix+`', now()::text)`
	if every <= 0 {
		every, sql = lockCheck, `SELECT 1`
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := conn.Exec(ctx, sql); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("cdc: lock connection lost (the slot's advisory lock went with it; a standby may take over): %w", err)
		}
	}
}
