package config

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// DBConnectTimeout bounds the connection attempt of CheckDatabase.
const DBConnectTimeout = 5 * time.Second

// CheckDatabase checks the model against a live database: every table exists, every named column
// exists, keys are primary keys or unique NOT NULL columns, parent and reference columns have a
// type compatible with the key they point at, and no array or reference field collides with a
// column. It connects to pgURL, or to cfg.Postgres.URL when pgURL is "". Problems come back in
// a *ValidationError, with the config file's lines; an unreachable database is one problem.
// wal_level and the publication are left to the cdc stage, which creates what it can.
func CheckDatabase(ctx context.Context, cfg *Config, pgURL string) error {
	fromConfig := pgURL == "" || pgURL == cfg.Postgres.URL
	if pgURL == "" {
		pgURL = cfg.Postgres.URL
	}
	conn, p := connect(ctx, pgURL)
	if p != nil {
		p.Path = "postgres.url"
		if fromConfig { // else the file's line would point at a URL that was not used
			*p = cfg.src.problem(p.Path, p.Message)
		}
		return cfg.dbProblems([]Problem{*p})
	}
	defer conn.Close(context.WithoutCancel(ctx))
	cat, err := loadCatalog(ctx, conn, cfg.Model.Tables())
	if err != nil {
		return fmt.Errorf("read the catalog of %s: %w", hostPort(conn.Config()), err)
	}
	d := &dbChecker{cat: cat, checker: checker{src: cfg.src}}
	for i := range cfg.Model.Roots {
		d.root(&cfg.Model.Roots[i], indexPath("model.roots", i))
	}
	return cfg.dbProblems(d.problems)
}

func (c *Config) dbProblems(ps []Problem) error {
	return (&ValidationError{Source: c.src.sourceName(), Problems: ps}).orNil()
}

// connect returns a connection, or a problem naming the server and the ways to fix the address.
func connect(ctx context.Context, pgURL string) (*pgx.Conn, *Problem) {
	if pgURL == "" {
		return nil, &Problem{Message: "missing; pass --pg-url or set WALHOOK_PG_URL or postgres.url to check the model against the database"}
	}
	pc, err := pgx.ParseConfig(pgURL)
	if err != nil {
		return nil, &Problem{Message: fmt.Sprintf("cannot parse the connection URL: %v; use postgres://user:password@host:5432/dbname", redactErr(err))}
	}
	pc.ConnectTimeout = DBConnectTimeout
	ctx, cancel := context.WithTimeout(ctx, DBConnectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, &Problem{Message: fmt.Sprintf("cannot connect to PostgreSQL at %s (database %q): %v; check --pg-url / WALHOOK_PG_URL and that PostgreSQL is running and accepts connections there",
			hostPort(pc), pc.Database, rootCause(err))}
	}
	return conn, nil
}

func hostPort(pc *pgx.ConnConfig) string {
	return net.JoinHostPort(pc.Host, strconv.Itoa(int(pc.Port)))
}

// rootCause drops pgconn's "failed to connect to `user=… database=…`" wrapping, which repeats
// what the message already says, and joins the per-attempt errors (pgx tries each address and
// TLS mode) into one line without repeats.
func rootCause(err error) string {
	for next := errors.Unwrap(err); next != nil; next = errors.Unwrap(err) {
		err = next
	}
	var lines []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" && !slices.Contains(lines, l) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}

// redactErr keeps a parse error from echoing a password back into logs.
func redactErr(err error) string { return redactConnString(err.Error()) }
