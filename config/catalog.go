package config

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// catalog is what CheckDatabase needs to know about the database, read in two queries.
type catalog struct {
	// all lists every user table, for "did you mean" suggestions.
	all []string
	// tables holds the columns of the model's tables that exist.
	tables map[string]*tableInfo
}

type tableInfo struct {
	name    string
	columns map[string]columnInfo
	order   []string // column names in attnum order, for messages
}

type columnInfo struct {
	typ     string // format_type, e.g. "bigint", "character varying(64)"
	typname string // pg_type.typname, e.g. "int8", for compatibility checks
	notNull bool
	primary bool // the table's single-column primary key
	unique  bool // has a single-column, non-partial unique index
}

const allTablesSQL = `
SELECT n.nspname || '.' || c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY 1`

// columnsSQL returns every column of the listed tables with its type and whether a
// single-column primary-key or unique index covers it (partial and expression indexes do not
// make a key).
const columnsSQL = `
SELECT n.nspname || '.' || c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
       t.typname, a.attnotnull,
       COALESCE(bool_or(i.indisprimary), false), COALESCE(bool_or(i.indisunique), false)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND i.indnkeyatts = 1
     AND i.indkey[0] = a.attnum AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
WHERE c.relkind IN ('r', 'p') AND n.nspname || '.' || c.relname = ANY($1)
GROUP BY c.oid, n.nspname, c.relname, a.attnum, a.attname, a.atttypid, a.atttypmod, t.typname, a.attnotnull
ORDER BY c.oid, a.attnum`

func loadCatalog(ctx context.Context, conn *pgx.Conn, tables []string) (*catalog, error) {
	all, err := queryStrings(ctx, conn, allTablesSQL)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	cat := &catalog{all: all, tables: map[string]*tableInfo{}}
	rows, err := conn.Query(ctx, columnsSQL, tables)
	if err != nil {
		return nil, fmt.Errorf("list columns: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var table, name string
		var col columnInfo
		if err := rows.Scan(&table, &name, &col.typ, &col.typname, &col.notNull, &col.primary, &col.unique); err != nil {
			return nil, fmt.Errorf("list columns: %w", err)
		}
		cat.add(table, name, col)
	}
	return cat, rows.Err()
}

func (cat *catalog) add(table, name string, col columnInfo) {
	t := cat.tables[table]
	if t == nil {
		t = &tableInfo{name: table, columns: map[string]columnInfo{}}
		cat.tables[table] = t
	}
	t.columns[name] = col
	t.order = append(t.order, name)
}

func queryStrings(ctx context.Context, conn *pgx.Conn, sql string) ([]string, error) {
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// primaryKey names the single-column primary key, or "" (none, or composite).
func (t *tableInfo) primaryKey() string {
	for _, name := range t.order {
		if t.columns[name].primary {
			return name
		}
	}
	return ""
}

// isKey reports whether col identifies a row: the primary key or a unique NOT NULL column.
func (c columnInfo) isKey() bool { return c.primary || (c.unique && c.notNull) }

// typeFamily groups types whose values compare equal across them, so an int4 parent column can
// point at an int8 key; "" means the type only matches itself.
func typeFamily(typname string) string {
	switch typname {
	case "int2", "int4", "int8":
		return "integer"
	case "text", "varchar", "bpchar":
		return "string"
	}
	return ""
}

// compatible reports whether a column of type a can hold keys of type b.
func compatible(a, b columnInfo) bool {
	if a.typname == b.typname {
		return true
	}
	fa, fb := typeFamily(a.typname), typeFamily(b.typname)
	return fa != "" && fa == fb
}
