package cdc

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/avro"
)

// relation is one published table as its latest Relation message describes it, with the
// compiled change schema and the routes of its rows. A Relation message for a known relation
// id with another column set (ALTER TABLE) replaces it: a new schema version, no restart.
type relation struct {
	id      uint32
	name    string // schema-qualified
	table   avro.Table
	schema  *avro.ChangeSchema
	routes  []route
	nameHdr []byte
	// prefixes caches the registry framing prefix of schema per topic.
	prefixes map[string][]byte
	// hdrs caches the change headers per op for one transaction (streamer.changeHeaders).
	hdrs [avro.OpRead + 1]struct {
		txn uint64
		h   []kgo.RecordHeader
	}
}

// typeInfo is what the encoder needs from pg_type about one column type, domains resolved.
type typeInfo struct {
	name, elemName string
	isEnum, elemIs bool
}

// catalog looks types and nullability up on a normal connection, caching types by OID.
// Owned by the stream goroutine.
type catalog struct {
	conn  *pgx.Conn
	types map[uint32]typeInfo
}

const typeSQL = `
WITH RECURSIVE base(oid, cur, depth) AS (
	SELECT oid, oid, 0 FROM pg_type WHERE oid = ANY($1::oid[])
	UNION ALL
	SELECT b.oid, t.typbasetype, b.depth + 1 FROM base b JOIN pg_type t ON t.oid = b.cur WHERE t.typtype = 'd'
)
SELECT DISTINCT ON (b.oid) b.oid, t.typname::text, t.typtype = 'e', coalesce(e.typname::text, ''), coalesce(e.typtype = 'e', false)
FROM base b JOIN pg_type t ON t.oid = b.cur
LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
ORDER BY b.oid, b.depth DESC`

func (c *catalog) lookupTypes(ctx context.Context, oids []uint32) error {
	var missing []uint32
	for _, o := range oids {
		if _, ok := c.types[o]; !ok {
			missing = append(missing, o)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	rows, err := c.conn.Query(ctx, typeSQL, missing)
	if err != nil {
		return fmt.Errorf("cdc: look up column types %v: %w", missing, err)
	}
	for rows.Next() {
		var oid uint32
		var ti typeInfo
		if err := rows.Scan(&oid, &ti.name, &ti.isEnum, &ti.elemName, &ti.elemIs); err != nil {
			return fmt.Errorf("cdc: look up column types: %w", err)
		}
		c.types[oid] = ti
	}
	return rows.Err()
}

// notNull returns the NOT NULL columns of relation id as the catalog has it now.
func (c *catalog) notNull(ctx context.Context, id uint32) (map[string]bool, error) {
	rows, err := c.conn.Query(ctx,
		`SELECT attname::text FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attnotnull`, id)
	if err != nil {
		return nil, fmt.Errorf("cdc: look up columns of relation %d: %w", id, err)
	}
	out := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out[n] = true
	}
	return out, rows.Err()
}

// table builds the avro table of a Relation message.
func (c *catalog) table(ctx context.Context, m *pglogrepl.RelationMessage) (avro.Table, error) {
	oids := make([]uint32, len(m.Columns))
	for i, col := range m.Columns {
		oids[i] = col.DataType
	}
	if err := c.lookupTypes(ctx, oids); err != nil {
		return avro.Table{}, err
	}
	nn, err := c.notNull(ctx, m.RelationID)
	if err != nil {
		return avro.Table{}, err
	}
	t := avro.Table{Schema: m.Namespace, Name: m.RelationName, Columns: make([]avro.Column, len(m.Columns))}
	for i, col := range m.Columns {
		ti, ok := c.types[col.DataType]
		if !ok { // type dropped since: keep the value as text
			ti = typeInfo{name: "text"}
		}
		t.Columns[i] = avro.Column{
			Name: col.Name, TypeOID: col.DataType, TypeName: ti.name, TypeMod: col.TypeModifier,
			IsEnum: ti.isEnum, ElemTypeName: ti.elemName, ElemIsEnum: ti.elemIs,
			Nullable: !nn[col.Name], Key: col.Flags&1 != 0,
		}
	}
	return t, nil
}

// sameShape reports whether two versions of a table encode identically.
func sameShape(a, b avro.Table) bool {
	if a.Schema != b.Schema || a.Name != b.Name || len(a.Columns) != len(b.Columns) {
		return false
	}
	for i := range a.Columns {
		if a.Columns[i] != b.Columns[i] {
			return false
		}
	}
	return true
}
