package compliance

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// column is one table column as PostgreSQL's catalog describes it. Domains are resolved to their
// base type.
type column struct {
	Name     string
	Type     string // pg_type.typname of the (base) type: "int4", "timestamptz", "_text"
	Enum     bool   // a user enum type
	Elem     string // arrays: element typname; "" otherwise
	ElemEnum bool
	Nullable bool
}

// catalogSQL lists the live columns of one table in attnum order, the order the pipeline writes
// them to payloads.
const catalogSQL = `
SELECT a.attname,
       bt.typname,
       bt.typtype = 'e',
       COALESCE(et.typname, ''),
       COALESCE(et.typtype = 'e', false),
       NOT a.attnotnull
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A'
WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`

// catalog reads table columns from PostgreSQL. Each call opens its own short connection: the
// catalog is read at start and again only when a payload shows a column the schema lacks.
type catalog struct {
	url string
}

// columns returns the columns of every table in tables (schema-qualified), by table.
func (c catalog) columns(ctx context.Context, tables []string) (map[string][]column, error) {
	conn, err := pgx.Connect(ctx, c.url)
	if err != nil {
		return nil, fmt.Errorf("compliance: connect to PostgreSQL to read column types: %w; check postgres.url (WALHOOK_PG_URL)", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	out := make(map[string][]column, len(tables))
	for _, t := range tables {
		cols, err := tableColumns(ctx, conn, t)
		if err != nil {
			return nil, err
		}
		out[t] = cols
	}
	return out, nil
}

func tableColumns(ctx context.Context, conn *pgx.Conn, table string) ([]column, error) {
	schema, name, ok := strings.Cut(table, ".")
	if !ok {
		return nil, fmt.Errorf("compliance: table %q is not schema-qualified; write it as schema.table in the model", table)
	}
	rows, err := conn.Query(ctx, catalogSQL, schema, name)
	if err != nil {
		return nil, fmt.Errorf("compliance: read columns of %s: %w", table, err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var c column
		err := r.Scan(&c.Name, &c.Type, &c.Enum, &c.Elem, &c.ElemEnum, &c.Nullable)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("compliance: read columns of %s: %w", table, err)
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("compliance: table %s not found (or has no columns) in the database of postgres.url; fix the model or the URL", table)
	}
	return cols, nil
}
