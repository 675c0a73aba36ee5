package webhook

import (
	"context"
	"sync"

	"github.com/jackc/pgx/v5"
)

// db is one PostgreSQL connection for the sink's rare writes (failing_since, disabling) and
// reloads, reopened after a failure. Statements are serialized by mu; the sink never queries per
// event, so one connection is enough.
type db struct {
	url  string
	mu   sync.Mutex
	conn *pgx.Conn // guarded by mu; nil when closed or broken
}

func (d *db) with(ctx context.Context, fn func(*pgx.Conn) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil || d.conn.IsClosed() {
		c, err := pgx.Connect(ctx, d.url)
		if err != nil {
			return err
		}
		d.conn = c
	}
	err := fn(d.conn)
	if err != nil && d.conn.PgConn().IsBusy() {
		_ = d.conn.Close(context.WithoutCancel(ctx))
		d.conn = nil
	}
	return err
}

// Exec runs one statement.
func (d *db) Exec(ctx context.Context, sql string, args ...any) error {
	return d.with(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, sql, args...)
		return err
	})
}

func (d *db) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		_ = d.conn.Close(context.Background())
		d.conn = nil
	}
}
