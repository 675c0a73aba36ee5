package cdc

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/config"
)

// Snapshot units. A root table is read in chunks of root rows, and each chunk also reads, in
// the same watermark window, every subordinate row (of every depth) of exactly those roots, so
// bubble-up applies a root and its subordinates as one unit (root-atomic chunks). A reference
// table (not part of a root) is read in chunks of its own rows. Subordinate tables have no pass
// of their own: a resnapshot of one re-reads the roots it belongs to. See docs/cdc.md.

// snapshotUnits lists the tables read in chunks of their own, in snapshot order: the roots in
// model order, then the reference tables that are not roots. A reference table that is also a
// subordinate gets a pass of its own too (its reference topic needs every row, not only those
// under a root).
func snapshotUnits(m *config.Model) []string {
	var out []string
	for _, r := range m.TableRoles() {
		if (r.Subordinate == nil || r.Reference != nil) && !slices.Contains(out, r.Table) {
			out = append(out, r.Table)
		}
	}
	return out
}

// unitsOf returns the snapshot units that read table: itself when it is a unit, else the
// roots it is a subordinate of.
func unitsOf(m *config.Model, table string) []string {
	units := snapshotUnits(m)
	if slices.Contains(units, table) {
		return []string{table}
	}
	var out []string
	for _, r := range m.TableRoles() {
		if r.Table == table && r.Subordinate != nil && !slices.Contains(out, r.Root.Table) {
			out = append(out, r.Root.Table)
		}
	}
	return out
}

// chunkPlan is how one snapshot unit is read: its own rows in primary-key chunks and, for a
// root, the subordinate rows of each chunk's roots.
type chunkPlan struct {
	unit    *tableMeta
	rootKey int        // index in unit.cols of the root key column; -1 for a reference table
	route   *route     // nil for a reference table; the root route, for the chunk's TxnEnds
	subs    []*subPlan // parents before their children
}

// subPlan selects the rows of one subordinate table under a set of root keys ($1, a text
// array literal of root keys), in primary-key order.
type subPlan struct {
	meta *tableMeta
	sql  string
}

// loadPlan builds the plan of a unit from the catalog.
func (sn *snapshotter) loadPlan(ctx context.Context, conn *pgx.Conn, unit string) (*chunkPlan, error) {
	m, err := loadTableMeta(ctx, conn, unit)
	if err != nil {
		return nil, err
	}
	p := &chunkPlan{unit: m, rootKey: -1}
	metas := map[string]*tableMeta{unit: m}
	for _, r := range sn.s.cfg.Model.TableRoles() {
		if r.Root == nil || r.Root.Table != unit {
			continue
		}
		if r.Subordinate == nil {
			p.rootKey = slices.Index(m.cols, r.Root.Key)
			p.route = &route{kind: routeRoot, topic: sn.s.cfg.Kafka.ChangeTopic(*r.Root), root: r.Root, ownCol: -1}
			continue
		}
		for _, s := range r.Path {
			if metas[s.Table] == nil {
				if metas[s.Table], err = loadTableMeta(ctx, conn, s.Table); err != nil {
					return nil, err
				}
			}
		}
		sm := metas[r.Table]
		p.subs = append(p.subs, &subPlan{meta: sm, sql: subSelect(sm, r.Path, metas)})
	}
	return p, nil
}

// subSelect is the SELECT of the rows of path's last table whose root (path[0]'s parent
// column, reached through the intermediate tables) is in $1.
func subSelect(m *tableMeta, path []*config.Subordinate, metas map[string]*tableMeta) string {
	n := len(path)
	from := table(path[n-1].Table) + " a0"
	cur := "a0"
	for i := n - 2; i >= 0; i-- {
		alias := "a" + strconv.Itoa(n-1-i)
		from += " JOIN " + table(path[i].Table) + " " + alias + " ON " + cur + "." + ident(path[i+1].ParentColumn) +
			" = " + alias + "." + ident(path[i].Key)
		cur = alias
	}
	top := metas[path[0].Table]
	typ := "text"
	if i := slices.Index(top.cols, path[0].ParentColumn); i >= 0 {
		typ = top.types[i]
	}
	cols := make([]string, len(m.cols))
	for i, c := range m.cols {
		cols[i] = "a0." + ident(c)
	}
	order := make([]string, len(m.pk))
	for i, j := range m.pk {
		order[i] = "a0." + ident(m.cols[j])
	}
	return "SELECT " + strings.Join(cols, ", ") + " FROM " + from + " WHERE " + cur + "." + ident(path[0].ParentColumn) +
		" = ANY($1::" + typ + "[]) ORDER BY " + strings.Join(order, ", ")
}

// arrayLiteral renders keys as a PostgreSQL text array literal.
func arrayLiteral(keys [][]byte) []byte {
	b := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		for _, c := range k {
			if c == '"' || c == '\\' {
				b = append(b, '\\')
			}
			b = append(b, c)
		}
		b = append(b, '"')
	}
	return append(b, '}')
}
