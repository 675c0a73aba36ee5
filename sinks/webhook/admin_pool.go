package webhook

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// dbConn is what the Admin's statements need: a single connection (the CLI) or a pool (the
// HTTP API, whose requests run concurrently).
type dbConn interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// adminPoolSize bounds the API's connections: admin requests are short and rare next to the
// stages' traffic.
const adminPoolSize = 4

// OpenAdminPool is OpenAdmin over a small connection pool, safe for concurrent use (the HTTP
// API). It checks that the database answers before it returns.
func OpenAdminPool(ctx context.Context, pgURL string, opts ...AdminOption) (*Admin, error) {
	a, err := newAdmin(pgURL, opts)
	if err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(pgURL)
	if err != nil {
		return nil, fmt.Errorf("webhook: postgres URL %s: %w", redactPG(pgURL), err)
	}
	pc.MaxConns = adminPoolSize
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("webhook: connect to %s: %w", redactPG(pgURL), err)
	}
	cctx, cancel := context.WithTimeout(ctx, adminConnectTimeout)
	defer cancel()
	if err := pool.Ping(cctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("webhook: connect to %s: %w", redactPG(pgURL), err)
	}
	a.conn, a.close = pool, pool.Close
	return a, nil
}
