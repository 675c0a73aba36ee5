package pgtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// dropDatabase removes a test database from an external server. Its logical replication slots go
// first: PostgreSQL refuses to drop a database that a slot belongs to, and a slot held by a
// still-connected walsender must have that walsender terminated before it can be dropped.
// Failures are logged, not fatal: a leftover database on a shared server is litter, not a bug in
// the code under test.
func dropDatabase(t testing.TB, adminURL, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := dropSlotsAndDatabase(ctx, adminURL, name); err != nil {
		t.Logf("pgtest: drop database %s (drop it by hand): %v", name, err)
	}
}

func dropSlotsAndDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := dropSlots(ctx, conn, name); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

// dropSlots polls because a terminated walsender releases its slot asynchronously.
func dropSlots(ctx context.Context, conn *pgx.Conn, db string) error {
	const q = `SELECT count(pg_terminate_backend(active_pid)) FILTER (WHERE active_pid IS NOT NULL),
	                  count(pg_drop_replication_slot(slot_name)) FILTER (WHERE active_pid IS NULL),
	                  count(*) FILTER (WHERE active_pid IS NOT NULL)
	           FROM pg_replication_slots WHERE database = $1`
	for {
		var terminated, dropped, active int
		if err := conn.QueryRow(ctx, q, db).Scan(&terminated, &dropped, &active); err != nil {
			return fmt.Errorf("drop replication slots: %w", err)
		}
		if active == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replication slots of %s still active: %w", db, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
