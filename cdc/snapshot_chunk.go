package cdc

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/walhook/walhook/avro"
)

// tableMeta is what the snapshot loop needs to read a table in primary-key order.
type tableMeta struct {
	name     string // schema-qualified
	oid      uint32
	cols     []string // columns as pgoutput sends them (attnum order, no generated columns)
	types    []string // their types (format_type)
	pk       []int    // indexes in cols of the primary-key columns, in key order
	pkTypes  []string // their types, for the parameter casts
	estimate int64    // pg_class.reltuples; -1 when unknown
	// base, keyTuple and order build the bounded reads: SELECT … FROM t, "(k1, k2)", " ORDER BY k1, k2 LIMIT ".
	base, keyTuple, order string
	maxKeySQL             string // the largest primary key now
}

const metaSQL = `
SELECT c.oid, c.reltuples::bigint, a.attname::text, format_type(a.atttypid, a.atttypmod),
       coalesce(array_position(i.indkey::int2[], a.attnum), -1)
FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE c.oid = $1::regclass
ORDER BY a.attnum`

func loadTableMeta(ctx context.Context, conn *pgx.Conn, name string) (*tableMeta, error) {
	rows, err := conn.Query(ctx, metaSQL, table(name))
	if err != nil {
		return nil, fmt.Errorf("cdc: snapshot of %s: read its columns: %w", name, err)
	}
	m := &tableMeta{name: name}
	type pkCol struct{ pos, idx int }
	var pks []pkCol
	var types []string
	for rows.Next() {
		var col, typ string
		var pos int
		if err := rows.Scan(&m.oid, &m.estimate, &col, &typ, &pos); err != nil {
			return nil, fmt.Errorf("cdc: snapshot of %s: read its columns: %w", name, err)
		}
		if pos >= 0 {
			pks = append(pks, pkCol{pos, len(m.cols)})
		}
		m.cols = append(m.cols, col)
		types = append(types, typ)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cdc: snapshot of %s: read its columns: %w", name, err)
	}
	m.types = types
	if len(pks) == 0 {
		return nil, fmt.Errorf("cdc: snapshot of %s: the table has no primary key, and snapshot chunks are read in "+
			"primary-key order: add one (`ALTER TABLE %s ADD PRIMARY KEY (...)`)", name, table(name))
	}
	slices.SortFunc(pks, func(a, b pkCol) int { return a.pos - b.pos })
	quoted := make([]string, len(m.cols))
	for i, c := range m.cols {
		quoted[i] = ident(c)
	}
	var keys []string
	for _, p := range pks {
		m.pk = append(m.pk, p.idx)
		keys = append(keys, quoted[p.idx])
	}
	base := "SELECT " + strings.Join(quoted, ", ") + " FROM " + table(name)
	order := " ORDER BY " + strings.Join(keys, ", ") + " LIMIT "
	m.base, m.keyTuple, m.order = base, "("+strings.Join(keys, ", ")+")", order
	desc := make([]string, len(keys))
	for i, k := range keys {
		desc[i] = k + " DESC"
	}
	m.maxKeySQL = "SELECT " + strings.Join(keys, ", ") + " FROM " + table(name) + " ORDER BY " + strings.Join(desc, ", ") + " LIMIT 1"
	return m, nil
}

// keyParams is "($first::type, …)" for the primary-key columns, numbering from first.
func (m *tableMeta) keyParams(first int) string {
	ps := make([]string, len(m.pk))
	for i, idx := range m.pk {
		ps[i] = "$" + strconv.Itoa(first+i) + "::" + m.types[idx]
	}
	return "(" + strings.Join(ps, ", ") + ")"
}

// upperKey reads the largest primary key of the table as text; empty (not nil) when the table
// has no row.
func upperKey(ctx context.Context, conn *pgx.Conn, m *tableMeta) ([]string, error) {
	rows, err := readRows(ctx, conn, m.maxKeySQL, nil)
	if err != nil {
		return nil, fmt.Errorf("cdc: snapshot of %s: read its largest primary key: %w", m.name, err)
	}
	if len(rows) == 0 {
		return []string{}, nil
	}
	out := make([]string, len(rows[0]))
	for i, c := range rows[0] {
		out[i] = string(c)
	}
	return out, nil
}

// chunk is one chunk handed from the snapshot loop to the stream goroutine. The loop fills
// it (under snapshotter.mu) before it writes the high watermark; the stream takes it at the
// high watermark and sends the result on done.
type chunk struct {
	id    string
	plan  *chunkPlan
	parts []*tableMeta  // the unit's table, then its subordinate tables in plan order
	rows  [][][][]byte  // per part: text cells in the part's cols order; nil is NULL
	roots [][]byte      // root keys of the chunk's root rows, in key order; nil for a reference table
	snap  *readSnapshot // the MVCC snapshot of the reads
	ready bool
	done  chan chunkResult // capacity 1
}

type chunkResult struct {
	commitLSN pglogrepl.LSN  // of the high watermark's transaction, which the reads belong to
	emitted   map[string]int // rows written as reads, by table
	unitRows  int            // of them, rows of the unit's own table (the progress counts these)
	dropped   int
	lastKey   []string // primary key of the last unit row read (emitted or not); nil: the unit is done
	retry     string   // not empty: nothing was emitted, read the chunk again
	retryKind string   // retry's metric label
}

// window is a chunk between its low and high watermarks, as the stream sees it.
type window struct {
	c         *chunk
	parts     map[string]*tableMeta // the chunk's tables by name
	touched   map[string]struct{}   // table NUL primary key of the rows a streamed change touched
	unknown   bool                  // a change of a chunk table without its primary key was seen
	truncated bool                  // a TRUNCATE of a chunk table was seen: its rows may be gone
	pkIdx     map[*relation][]int
	openSeq   uint64 // commitLog sequence number of the first transaction decoded after the low watermark
}

// chunk reads one chunk: low watermark, SELECT of the unit's next rows and of the subordinate
// rows of exactly those roots, hand-over, high watermark, then waits for the stream's result.
func (sn *snapshotter) chunk(ctx context.Context, conn *pgx.Conn, pl *chunkPlan, p snapProgress) (chunkResult, error) {
	m := pl.unit
	parts := []*tableMeta{m}
	for _, sp := range pl.subs {
		parts = append(parts, sp.meta)
	}
	sn.mu.Lock()
	id := sn.runID + "/" + strconv.FormatInt(p.Gen, 36) + "/" + strconv.FormatInt(p.Chunks, 10) + "/" + m.name
	c := &chunk{id: id, plan: pl, parts: parts, done: make(chan chunkResult, 1)}
	sn.chunks[id] = c
	sn.mu.Unlock()
	defer func() { sn.mu.Lock(); delete(sn.chunks, id); sn.mu.Unlock() }()
	fail := func(what string, err error) (chunkResult, error) {
		return chunkResult{}, fmt.Errorf("cdc: snapshot of %s, chunk %d after key %v: %s: %w", m.name, p.Chunks, p.LastKey, what, err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_logical_emit_message(true, '`+snapLowPrefix+`', $1)`, id); err != nil {
		return fail("write the low watermark", err)
	}
	// The reads share one snapshot, which the stream checks at the high watermark against
	// the transactions it decoded before the low one (snapshot_visibility.go).
	snap, err := beginReadSnapshot(ctx, conn)
	if err != nil {
		return fail("take the read snapshot", err)
	}
	inTxn := true
	defer func() {
		if inTxn {
			_, _ = conn.Exec(context.Background(), "ROLLBACK")
		}
	}()
	rows, err := readChunk(ctx, conn, m, p.LastKey, p.UpperKey, sn.chunkRows)
	if err != nil {
		return fail("read", err)
	}
	all := [][][][]byte{rows}
	var roots [][]byte
	if pl.rootKey >= 0 {
		for _, r := range rows {
			roots = append(roots, r[pl.rootKey])
		}
		keys := arrayLiteral(roots)
		for _, sp := range pl.subs {
			var sub [][][]byte
			if len(roots) > 0 {
				if sub, err = readRows(ctx, conn, sp.sql, [][]byte{keys}); err != nil {
					return fail("read "+sp.meta.name+" of the chunk's roots", err)
				}
			}
			all = append(all, sub)
		}
	}
	if err := committedInProgress(ctx, conn, snap); err != nil {
		return fail("check the read snapshot's in-progress transactions", err)
	}
	if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
		return fail("end the read snapshot", err)
	}
	inTxn = false
	sn.mu.Lock()
	c.rows, c.roots, c.snap, c.ready = all, roots, snap, true
	sn.mu.Unlock()
	if _, err := conn.Exec(ctx, `SELECT pg_logical_emit_message(true, '`+snapHighPrefix+`', $1)`, id); err != nil {
		return fail("write the high watermark", err)
	}
	select {
	case <-ctx.Done():
		return chunkResult{}, ctx.Err()
	case res := <-c.done:
		if res.retry == "" && len(rows) == sn.chunkRows {
			res.lastKey = pkStrings(rows[len(rows)-1], m.pk)
		}
		return res, nil
	}
}

// readChunk selects up to n rows after key (from the start when nil) and at most upper (no
// bound when nil, none when empty) in text format.
func readChunk(ctx context.Context, conn *pgx.Conn, m *tableMeta, after, upper []string, n int) ([][][]byte, error) {
	if upper != nil && len(upper) == 0 {
		return nil, nil // the table was empty when its snapshot began
	}
	var conds []string
	var params [][]byte
	if after != nil {
		conds = append(conds, m.keyTuple+" > "+m.keyParams(1))
		for _, k := range after {
			params = append(params, []byte(k))
		}
	}
	if upper != nil {
		conds = append(conds, m.keyTuple+" <= "+m.keyParams(len(params)+1))
		for _, k := range upper {
			params = append(params, []byte(k))
		}
	}
	sql := m.base
	if len(conds) > 0 {
		sql += " WHERE " + strings.Join(conds, " AND ")
	}
	return readRows(ctx, conn, sql+m.order+strconv.Itoa(n), params)
}

// readRows runs sql with text parameters and returns its rows' text cells.
func readRows(ctx context.Context, conn *pgx.Conn, sql string, params [][]byte) ([][][]byte, error) {
	rr := conn.PgConn().ExecParams(ctx, sql, params, nil, nil, nil)
	var out [][][]byte
	for rr.NextRow() {
		vals := rr.Values()
		size := 0
		for _, v := range vals {
			size += len(v)
		}
		slab := make([]byte, 0, size)
		row := make([][]byte, len(vals))
		for i, v := range vals {
			if v != nil {
				start := len(slab)
				slab = append(slab, v...)
				row[i] = slab[start:len(slab):len(slab)]
			}
		}
		out = append(out, row)
	}
	if _, err := rr.Close(); err != nil {
		return nil, err
	}
	return out, nil
}

func pkStrings(row [][]byte, pk []int) []string {
	out := make([]string, len(pk))
	for i, j := range pk {
		out[i] = string(row[j])
	}
	return out
}

// marker handles a snapshot marker on the stream goroutine; t is the marker's transaction.
func (sn *snapshotter) marker(ctx context.Context, st *streamer, t *txn, prefix string, content []byte) error {
	if t == nil {
		sn.s.log.Warn("non-transactional snapshot marker ignored: write it with pg_logical_emit_message(true, ...)",
			zap.String("prefix", prefix))
		return nil
	}
	switch prefix {
	case snapLowPrefix:
		sn.openWindow(string(content))
	case snapHighPrefix:
		return sn.closeWindow(ctx, st, t, string(content))
	case snapRequestPrefix:
		return sn.request(ctx, st, t, string(content))
	}
	return nil
}

// openWindow starts tracking the changes of a chunk's tables. A watermark of an earlier run,
// replayed from the slot after a restart, matches no chunk and is ignored.
func (sn *snapshotter) openWindow(id string) {
	sn.mu.Lock()
	c := sn.chunks[id]
	sn.mu.Unlock()
	if c == nil {
		return
	}
	w := &window{c: c, parts: map[string]*tableMeta{}, touched: map[string]struct{}{}, pkIdx: map[*relation][]int{},
		openSeq: sn.commits.n}
	for _, m := range c.parts {
		w.parts[m.name] = m
	}
	sn.wins[id] = w
	sn.open = len(sn.wins)
}

// touchedRow records the primary keys (new and old) a streamed change of rel touched in every
// open window that reads rel's table. It runs for every row change while a window is open.
func (sn *snapshotter) touchedRow(rel *relation, rc *rowChange) {
	for _, w := range sn.wins {
		m := w.parts[rel.name]
		if m == nil {
			continue
		}
		idx, ok := w.pkIdx[rel]
		if !ok {
			idx = pkIndexes(rel, m)
			w.pkIdx[rel] = idx
		}
		kn, okn := pkText(rel.name, rc.new, idx)
		ko, oko := pkText(rel.name, rc.old, idx)
		if okn {
			w.touched[kn] = struct{}{}
		}
		if oko {
			w.touched[ko] = struct{}{}
		}
		if !okn && !oko {
			w.unknown = true
		}
	}
}

// touchedTable records a TRUNCATE of rel in every open window that reads its table: the
// chunk's rows may have been read before it and are read again after it.
func (sn *snapshotter) touchedTable(rel *relation) {
	for _, w := range sn.wins {
		if w.parts[rel.name] != nil {
			w.truncated = true
		}
	}
}

// pkIndexes maps the chunk's primary-key columns to rel's column positions (nil if one is
// missing, which makes every change of rel "unknown").
func pkIndexes(rel *relation, m *tableMeta) []int {
	var out []int
	for _, j := range m.pk {
		i := slices.IndexFunc(rel.table.Columns, func(c avro.Column) bool { return c.Name == m.cols[j] })
		if i < 0 {
			return nil
		}
		out = append(out, i)
	}
	return out
}

// pkText joins the table name and the primary-key cells of a tuple; false when the tuple
// lacks one.
func pkText(tbl string, cells []avro.Cell, idx []int) (string, bool) {
	if cells == nil || idx == nil {
		return "", false
	}
	var b strings.Builder
	b.WriteString(tbl)
	for _, i := range idx {
		v, ok := cellText(cells, i)
		if !ok {
			return "", false
		}
		b.WriteByte(0)
		b.Write(v)
	}
	return b.String(), true
}

// rowPK is pkText of a row read by the snapshot.
func rowPK(tbl string, row [][]byte, pk []int) string {
	var b strings.Builder
	b.WriteString(tbl)
	for _, i := range pk {
		b.WriteByte(0)
		b.Write(row[i])
	}
	return b.String()
}

// closeWindow writes the chunk's rows no streamed change touched as reads of t (the high
// watermark's transaction): same routes, keys and transaction ends as streamed rows, and for
// a root chunk one transaction end per root of the chunk after all its reads.
func (sn *snapshotter) closeWindow(ctx context.Context, st *streamer, t *txn, id string) error {
	w := sn.wins[id]
	if w == nil {
		return nil
	}
	delete(sn.wins, id)
	sn.open = len(sn.wins)
	sn.mu.Lock()
	rows, roots, snap, ready := w.c.rows, w.c.roots, w.c.snap, w.c.ready
	sn.mu.Unlock()
	res := chunkResult{commitLSN: t.commitLSN, emitted: map[string]int{}}
	var mask uint64
	for _, m := range w.c.parts {
		mask |= tableBit(m.oid)
	}
	switch {
	case !ready:
		res.retry, res.retryKind = "the chunk's rows were not handed over before its high watermark", "not_handed_over"
	case w.truncated:
		res.retry, res.retryKind = "a TRUNCATE of a table of the chunk committed inside its window", "truncated"
	case w.unknown:
		res.retry, res.retryKind = "a change without its primary key touched a table of the chunk (check its replica identity)", "no_key"
	default:
		if why := sn.commits.stale(w.openSeq, snap, mask); why != "" {
			res.retry, res.retryKind = why, "stale_snapshot"
		}
	}
	rels := make([]*relation, len(w.c.parts))
	for i, m := range w.c.parts {
		rel, err := st.snapRelation(ctx, m.oid)
		if err != nil {
			return fmt.Errorf("cdc: snapshot of %s, chunk %s, at high watermark %s: %w", m.name, id, t.commitLSN, err)
		}
		rels[i] = rel
		if res.retry == "" && !sameColumns(rel, m.cols) {
			res.retry, res.retryKind = "the columns of "+m.name+" changed during the chunk", "columns_changed"
		}
	}
	if res.retry == "" {
		if err := sn.emitReads(ctx, st, t, rels, w, rows, roots, &res); err != nil {
			return err
		}
	}
	w.c.done <- res
	return nil
}

func (sn *snapshotter) emitReads(ctx context.Context, st *streamer, t *txn, rels []*relation, w *window, rows [][][][]byte, roots [][]byte, res *chunkResult) error {
	rt := w.c.plan.route
	if rt != nil {
		// Every root of the chunk gets its transaction end, even one whose rows the stream
		// carries: it tells bubble-up that the root's state is complete from here on.
		for _, k := range roots {
			t.register(rt, st.frame(nil, k))
		}
	}
	n := 0
	for i, rel := range rels {
		m := w.c.parts[i]
		cells := make([]avro.Cell, len(rel.table.Columns))
		for _, row := range rows[i] {
			if _, hit := w.touched[rowPK(m.name, row, m.pk)]; hit {
				res.dropped++
				continue
			}
			for i, v := range row {
				cells[i] = avro.Cell{Kind: avro.CellText, Data: v}
				if v == nil {
					cells[i] = avro.Cell{Kind: avro.CellNull}
				}
			}
			rc := rowChange{op: avro.OpRead, relID: rel.id, new: cells}
			if err := st.emitRow(ctx, t, rel, &rc); err != nil {
				return fmt.Errorf("%w (snapshot of %s, chunk %s)", err, m.name, w.c.id)
			}
			res.emitted[m.name]++
			if i == 0 {
				res.unitRows++
			}
			if n++; n&255 == 0 {
				if err := st.backpressure(ctx); err != nil {
					return err
				}
			}
		}
	}
	if rt == nil {
		return nil
	}
	return readEnds(ctx, st, t)
}

// register adds the root keyed key to t's transaction ends without counting a row.
func (t *txn) register(rt *route, key []byte) {
	t.touch(rt, key)
	t.touched[t.touchIdx[rt.topic][string(key)]].rows--
}

// readEnds writes the transaction ends of a root chunk, with header walhook-op: read (bubble-up
// takes it as "the root's state is complete as of this LSN"), and takes the roots off t so its
// commit does not write them again.
func readEnds(ctx context.Context, st *streamer, t *txn) error {
	for _, r := range t.touched {
		prefix, err := st.markerPrefix(ctx, r.topic, st.txnEndSchema)
		if err != nil {
			return fmt.Errorf("cdc: snapshot transaction end of %s key %s at LSN %s: %w", r.root.Table, r.key, t.commitLSN, err)
		}
		body := avro.AppendTxnEnd(st.scratch[:0], avro.TxnEnd{
			Table: r.root.Table, RootKey: r.key, CommitLSN: uint64(t.commitLSN), Xid: t.xid,
			CommitTime: t.commitTime, Rows: r.rows,
		})
		st.scratch = body
		st.produce(ctx, t, st.newRecord(r.topic, st.frameString(r.key), st.frame(prefix, body),
			st.headers(st.kindTxnEnd, st.tableHdr(r.root.Table), st.opHdr[avro.OpRead], t.lsnHdr, t.traceHdr)))
	}
	t.touched, t.touchIdx = nil, map[string]map[string]int{}
	return nil
}

func sameColumns(rel *relation, cols []string) bool {
	if len(rel.table.Columns) != len(cols) {
		return false
	}
	for i, c := range rel.table.Columns {
		if c.Name != cols[i] {
			return false
		}
	}
	return true
}

const relationSQL = `
SELECT n.nspname::text, c.relname::text, c.relreplident::text, a.attname::text, a.atttypid, a.atttypmod,
       c.relreplident = 'f' OR coalesce(a.attnum = ANY (i.indkey), false)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
LEFT JOIN pg_index i ON i.indrelid = c.oid
     AND ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident))
WHERE c.oid = $1
ORDER BY a.attnum`

// snapRelation returns the stream's relation of oid, building it from the catalog like a
// Relation message would when the stream has not seen one yet (no change of the table since
// the stream started).
func (st *streamer) snapRelation(ctx context.Context, oid uint32) (*relation, error) {
	if rel := st.rels[oid]; rel != nil {
		return rel, nil
	}
	rows, err := st.cat.conn.Query(ctx, relationSQL, oid)
	if err != nil {
		return nil, fmt.Errorf("read relation %d from the catalog: %w", oid, err)
	}
	m := pglogrepl.RelationMessage{RelationID: oid}
	for rows.Next() {
		var ident string
		var key bool
		col := &pglogrepl.RelationMessageColumn{}
		if err := rows.Scan(&m.Namespace, &m.RelationName, &ident, &col.Name, &col.DataType, &col.TypeModifier, &key); err != nil {
			return nil, fmt.Errorf("read relation %d from the catalog: %w", oid, err)
		}
		if key {
			col.Flags = 1
		}
		m.ReplicaIdentity = ident[0]
		m.Columns = append(m.Columns, col)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read relation %d from the catalog: %w", oid, err)
	}
	m.ColumnNum = uint16(len(m.Columns))
	if err := st.relation(ctx, &m); err != nil {
		return nil, err
	}
	return st.rels[oid], nil
}
