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
	_, err := CheckDatabaseReport(ctx, cfg, pgURL)
	return err
}

// DatabaseCheck says what CheckDatabaseReport compared the model with, so `walhook config
// validate --pg-url` can say what it checked rather than a bare "ok".
type DatabaseCheck struct {
	Server   string // host:port
	Database string
	User     string
	Version  string // server_version
	// WALLevel is the server's wal_level; walhook cdc needs logical.
	WALLevel string
	// Replication reports whether User may open a replication connection (REPLICATION or
	// superuser), which walhook cdc needs.
	Replication bool
	// Tables, Columns and Keys count what was found and checked: the model's tables, every
	// column it names, and every key (root, subordinate and reference keys).
	Tables, Columns, Keys int
	// Warnings are what would stop walhook cdc on this server although the model matches:
	// wal_level and the REPLICATION attribute.
	Warnings []string
}

// CheckDatabaseReport is CheckDatabase that also returns what it checked. The report is nil when
// the database could not be reached.
func CheckDatabaseReport(ctx context.Context, cfg *Config, pgURL string) (*DatabaseCheck, error) {
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
		return nil, cfg.dbProblems([]Problem{*p})
	}
	defer conn.Close(context.WithoutCancel(ctx))
	report := &DatabaseCheck{Server: hostPort(conn.Config()), Database: conn.Config().Database, User: conn.Config().User}
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('wal_level'),
		(SELECT rolreplication OR rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)`).
		Scan(&report.Version, &report.WALLevel, &report.Replication); err != nil {
		return nil, fmt.Errorf("read the settings of %s: %w", report.Server, err)
	}
	if report.WALLevel != "logical" {
		report.Warnings = append(report.Warnings, fmt.Sprintf("wal_level is %s: walhook cdc needs logical; run ALTER SYSTEM SET wal_level = logical and restart PostgreSQL", report.WALLevel))
	}
	if !report.Replication {
		report.Warnings = append(report.Warnings, fmt.Sprintf("user %s has no REPLICATION attribute: walhook cdc needs it; run ALTER ROLE %s REPLICATION", report.User, report.User))
	}
	cat, err := loadCatalog(ctx, conn, cfg.Model.Tables())
	if err != nil {
		return nil, fmt.Errorf("read the catalog of %s: %w", report.Server, err)
	}
	d := &dbChecker{cat: cat, checker: checker{src: cfg.src}, report: report, tables: map[string]bool{}}
	for i := range cfg.Model.Roots {
		d.root(&cfg.Model.Roots[i], indexPath("model.roots", i))
	}
	return report, cfg.dbProblems(d.problems)
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
			hostPort(pc), pc.Database, ConnectErrorCause(err))}
	}
	return conn, nil
}

func hostPort(pc *pgx.ConnConfig) string {
	return net.JoinHostPort(pc.Host, strconv.Itoa(int(pc.Port)))
}

// ConnectErrorCause is the cause of a failed PostgreSQL connect on one line: it drops pgconn's
// "failed to connect to `user=… database=…`" wrapping, which repeats what a message around it
// says, and joins the per-attempt errors (pgx tries each address and TLS mode) without repeats.
func ConnectErrorCause(err error) string {
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
