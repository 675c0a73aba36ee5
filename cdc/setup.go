package cdc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

// checkWALLevel fails unless wal_level is logical.
func checkWALLevel(ctx context.Context, conn *pgx.Conn) error {
	var level string
	if err := conn.QueryRow(ctx, `SHOW wal_level`).Scan(&level); err != nil {
		return fmt.Errorf("cdc: read wal_level: %w", err)
	}
	if level != "logical" {
		return fmt.Errorf("cdc: wal_level is %q, logical replication needs \"logical\": run "+
			"`ALTER SYSTEM SET wal_level = logical;` and restart PostgreSQL (on a managed service, "+
			"set the logical replication parameter of the instance)", level)
	}
	return nil
}

// checkTables fails when a model table does not exist.
func checkTables(ctx context.Context, conn *pgx.Conn, tables []string) error {
	var errs []error
	for _, t := range tables {
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table(t)).Scan(&exists); err != nil {
			return fmt.Errorf("cdc: look up table %s: %w", t, err)
		}
		if !exists {
			errs = append(errs, fmt.Errorf("cdc: table %s of the model does not exist: create it or fix the model", t))
		}
	}
	return errors.Join(errs...)
}

// ensurePublication creates the publication for tables, or checks that the existing one
// publishes every table and every kind of change.
func ensurePublication(ctx context.Context, conn *pgx.Conn, pub string, tables []string, log *zap.Logger) error {
	var all, ins, upd, del, trunc bool
	err := conn.QueryRow(ctx, `SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication WHERE pubname = $1`, pub).
		Scan(&all, &ins, &upd, &del, &trunc)
	if errors.Is(err, pgx.ErrNoRows) {
		quoted := make([]string, len(tables))
		for i, t := range tables {
			quoted[i] = table(t)
		}
		sql := fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s", ident(pub), strings.Join(quoted, ", "))
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("cdc: %s: %w; run it as a user that owns the tables (or a superuser)", sql, err)
		}
		log.Info("created publication", zap.String("publication", pub), zap.Strings("tables", tables))
		return nil
	}
	if err != nil {
		return fmt.Errorf("cdc: look up publication %s: %w", pub, err)
	}
	if !ins || !upd || !del || !trunc {
		return fmt.Errorf("cdc: publication %s does not publish every insert, update, delete and truncate: run "+
			"`ALTER PUBLICATION %s SET (publish = 'insert, update, delete, truncate');`", pub, ident(pub))
	}
	if all {
		return nil
	}
	rows, err := conn.Query(ctx, `SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1`, pub)
	if err != nil {
		return fmt.Errorf("cdc: list tables of publication %s: %w", pub, err)
	}
	have, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("cdc: list tables of publication %s: %w", pub, err)
	}
	var missing []string
	for _, t := range tables {
		if !slices.Contains(have, t) {
			missing = append(missing, table(t))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("cdc: publication %s lacks the model tables %s: run `ALTER PUBLICATION %s ADD TABLE %s;`",
			pub, strings.Join(missing, ", "), ident(pub), strings.Join(missing, ", "))
	}
	return nil
}

// identityNeed is a column a table's delete must carry in its old tuple.
type identityNeed struct {
	table, column, why string
}

// identityNeeds lists, per captured table, the column its deletes must carry: a root's key, a
// subordinate's parent column (its root key, or the way to it), a reference's key.
func (s *Stage) identityNeeds() []identityNeed {
	var out []identityNeed
	for _, r := range s.cfg.Model.TableRoles() {
		switch {
		case r.Reference != nil:
			out = append(out, identityNeed{r.Table, r.Reference.Key, "reference key"})
		case r.Subordinate == nil:
			out = append(out, identityNeed{r.Table, r.Root.Key, "root key"})
		default:
			out = append(out, identityNeed{r.Table, r.Subordinate.ParentColumn, "parent column"})
		}
	}
	return out
}

const identitySQL = `
SELECT c.relreplident::text,
       coalesce(array_agg(a.attname::text) FILTER (WHERE a.attname IS NOT NULL), '{}')
FROM pg_class c
LEFT JOIN pg_index i ON i.indrelid = c.oid
     AND ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident))
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey)
WHERE c.oid = $1::regclass
GROUP BY c.relreplident`

// ensureReplicaIdentity checks that every delete carries the column that keys it. With REPLICA
// IDENTITY DEFAULT the old tuple of a delete holds only the primary key, so a subordinate
// whose parent column is not in its primary key needs REPLICA IDENTITY FULL (or an identity
// index containing the column). Roots and references need only their key, which the default
// gives when it is the primary key.
func ensureReplicaIdentity(ctx context.Context, conn *pgx.Conn, needs []identityNeed, manage bool, log *zap.Logger) error {
	var errs []error
	fixed := map[string]bool{}
	for _, n := range needs {
		if fixed[n.table] {
			continue
		}
		var ident string
		var cols []string
		if err := conn.QueryRow(ctx, identitySQL, table(n.table)).Scan(&ident, &cols); err != nil {
			return fmt.Errorf("cdc: read replica identity of %s: %w", n.table, err)
		}
		if ident == "f" || slices.Contains(cols, n.column) {
			continue
		}
		sql := fmt.Sprintf("ALTER TABLE %s REPLICA IDENTITY FULL", table(n.table))
		if !manage {
			errs = append(errs, fmt.Errorf("cdc: a DELETE on %s would not carry its %s %q (replica identity %s): run `%s;` "+
				"or start with --manage-replica-identity (cdc.manage_replica_identity: true)", n.table, n.why, n.column, identityName(ident), sql))
			continue
		}
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("cdc: %s: %w; run it as the table's owner", sql, err)
		}
		fixed[n.table] = true
		log.Info("set replica identity full", zap.String("table", n.table), zap.String("column", n.column), zap.String("reason", n.why))
	}
	return errors.Join(errs...)
}

func identityName(c string) string {
	switch c {
	case "d":
		return "DEFAULT (primary key)"
	case "n":
		return "NOTHING"
	case "i":
		return "USING INDEX"
	}
	return c
}

// slotInfo is the replication slot as pg_replication_slots shows it.
type slotInfo struct {
	exists    bool
	plugin    string
	database  string
	confirmed pglogrepl.LSN
}

func readSlot(ctx context.Context, conn *pgx.Conn, slot string) (slotInfo, error) {
	var si slotInfo
	var plugin, db, lsn *string
	err := conn.QueryRow(ctx, `SELECT plugin, database, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).
		Scan(&plugin, &db, &lsn)
	if errors.Is(err, pgx.ErrNoRows) {
		return si, nil
	}
	if err != nil {
		return si, fmt.Errorf("cdc: read slot %s: %w", slot, err)
	}
	si.exists = true
	if plugin != nil {
		si.plugin = *plugin
	}
	if db != nil {
		si.database = *db
	}
	if lsn != nil {
		if si.confirmed, err = pglogrepl.ParseLSN(*lsn); err != nil {
			return si, fmt.Errorf("cdc: slot %s confirmed_flush_lsn %q: %w", slot, *lsn, err)
		}
	}
	return si, nil
}

// checkSlot fails when an existing slot cannot be ours.
func checkSlot(si slotInfo, slot, database string) error {
	if si.plugin != "pgoutput" {
		return fmt.Errorf("cdc: replication slot %s uses plugin %q, walhook needs pgoutput: if nothing else reads it, run "+
			"`SELECT pg_drop_replication_slot('%s'); SELECT pg_create_logical_replication_slot('%s', 'pgoutput');` "+
			"(or set postgres.slot to another name)", slot, si.plugin, slot, slot)
	}
	if si.database != database {
		return fmt.Errorf("cdc: replication slot %s belongs to database %q, not %q: set postgres.slot to another name "+
			"or postgres.url to that database", slot, si.database, database)
	}
	return nil
}

// createSlot creates the pgoutput slot on a replication connection. With export, the slot's
// consistent point comes with an exported snapshot (SnapshotName), usable with SET TRANSACTION
// SNAPSHOT until the replication connection runs its next command: an initial snapshot reader
// plugs in there.
func createSlot(ctx context.Context, repl *pgconn.PgConn, slot string, export bool) (pglogrepl.CreateReplicationSlotResult, error) {
	action := "NOEXPORT_SNAPSHOT"
	if export {
		action = "EXPORT_SNAPSHOT"
	}
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: action})
	if err != nil {
		return res, fmt.Errorf("cdc: create replication slot %s: %w; the user needs the REPLICATION attribute "+
			"and max_replication_slots a free slot", slot, err)
	}
	return res, nil
}
