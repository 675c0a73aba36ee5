package pipeline

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/walhook/walhook/avro"
)

// The reference store keeps every version of every referenced row the reference reader has read,
// in the stage's Pebble store, so that a snapshot at commit LSN L projects each reference from the
// newest version with commit LSN ≤ L (doc.go "References as of the source transaction"). Keys,
// beside the partition ranges 'S', 'R' and 'M':
//
//	'V' table key NUL BE64(lsn)  version of row key committed at lsn (encodeVersion)
//	'P' BE64(lsn) table key      the version at lsn superseded older ones (prune queue, refprune.go);
//	                             value: BE64(its record timestamp, µs)
//	'L' table BE64(lsn) key      a change (not a read) of a table some reference re-emits on;
//	                             value: BE64(commit time, µs) BE64(record timestamp, µs)
//	'T' table BE64(lsn)          the table was truncated at lsn
//
// table is the table's index in the layout (2 bytes). PostgreSQL text holds no NUL, so NUL ends a
// key. The store is rebuilt from the reference topics on every start (Run drops it first).

// refTable is one referenced table: which columns a version stores.
type refTable struct {
	name   string
	index  uint16
	cols   []string // every column some reference of the table projects, in first-seen order
	reemit bool     // some reference of the table re-emits its roots (config.Reference.Reemit)
}

// refLayout is the referenced tables of a model, by name.
type refLayout map[string]*refTable

// newRefLayout collects the referenced tables of roots and sets each root's refCols.
func newRefLayout(roots []*rootModel) refLayout {
	l := refLayout{}
	var names []string
	for _, rm := range roots {
		for _, ref := range rm.refs {
			t := l[ref.Table]
			if t == nil {
				t = &refTable{name: ref.Table}
				l[ref.Table] = t
				names = append(names, ref.Table)
			}
			t.reemit = t.reemit || ref.Reemit
			for _, c := range ref.Columns {
				if !slices.Contains(t.cols, c) {
					t.cols = append(t.cols, c)
				}
			}
		}
	}
	for i, n := range names {
		l[n].index = uint16(i)
	}
	for _, rm := range roots {
		rm.refCols = make([][]int, len(rm.refs))
		for j, ref := range rm.refs {
			t := l[ref.Table]
			for _, c := range ref.Columns {
				rm.refCols[j] = append(rm.refCols[j], slices.Index(t.cols, c))
			}
		}
	}
	return l
}

// refVersion is one version of a referenced row.
type refVersion struct {
	lsn   uint64
	flags uint8
	at    int64             // when the cdc stage wrote it (the record's timestamp), µs since the epoch: its age for pruning
	vals  []json.RawMessage // aligned to refTable.cols; nil: the row image had no such column
}

// Version flags.
const (
	// verDeleted: the row was deleted at lsn.
	verDeleted uint8 = 1 << iota
	// verGapHistory: versions of the row older than this one may be missing: compaction of the
	// reference topic removed records before the reader got to them, or the store pruned them.
	verGapHistory
	// verGapSnapshot: this is the first version known and an initial-snapshot read; the row's
	// state before it was never captured.
	verGapSnapshot
)

func (v *refVersion) deleted() bool { return v == nil || v.flags&verDeleted != 0 }

// project returns the values of cols (indexes in the table's columns); nil for a missing row.
func (v *refVersion) project(cols []int) []json.RawMessage {
	if v.deleted() {
		return nil
	}
	out := make([]json.RawMessage, len(cols))
	for i, c := range cols {
		if c >= 0 && c < len(v.vals) && v.vals[c] != nil {
			out[i] = v.vals[c]
		} else {
			out[i] = json.RawMessage("null")
		}
	}
	return out
}

// versionOf renders a change's row image, written at (the record's timestamp), into a version of
// t. Columns left unchanged (TOAST) keep prev's value.
func (t *refTable) versionOf(c *avro.Change, at time.Time, prev *refVersion) *refVersion {
	v := &refVersion{lsn: c.CommitLSN, at: at.UnixMicro()}
	if c.Op == avro.OpDelete || c.After == nil {
		v.flags |= verDeleted
		return v
	}
	v.vals = make([]json.RawMessage, len(t.cols))
	for i, col := range t.cols {
		j := slices.Index(c.After.Columns, col)
		if j < 0 {
			continue
		}
		if len(c.Unchanged) > 0 && slices.Contains(c.Unchanged, col) {
			if !prev.deleted() && i < len(prev.vals) {
				v.vals[i] = prev.vals[i]
			}
			continue
		}
		v.vals[i] = jsonValue(c.After.Values[j])
	}
	return v
}

// encodeVersion: flags, commit time (varint), then per column uvarint(len+1) and the bytes (0 for
// a column the image lacked).
func encodeVersion(v *refVersion) []byte {
	n := 1 + binary.MaxVarintLen64
	for _, x := range v.vals {
		n += binary.MaxVarintLen32 + len(x)
	}
	b := make([]byte, 0, n)
	b = append(b, v.flags)
	b = binary.AppendVarint(b, v.at)
	for _, x := range v.vals {
		if x == nil {
			b = binary.AppendUvarint(b, 0)
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(x))+1)
		b = append(b, x...)
	}
	return b
}

var errCorruptVersion = errors.New("corrupt reference version")

// decodeVersion decodes a value of 'V'; the values alias b only after the copy below, so b may be
// an iterator's buffer.
func decodeVersion(lsn uint64, b []byte, cols int) (*refVersion, error) {
	if len(b) < 1 {
		return nil, errCorruptVersion
	}
	v := &refVersion{lsn: lsn, flags: b[0]}
	at, n := binary.Varint(b[1:])
	if n <= 0 {
		return nil, errCorruptVersion
	}
	v.at = at
	rest := b[1+n:]
	if v.flags&verDeleted != 0 {
		return v, nil
	}
	owned := append([]byte(nil), rest...)
	v.vals = make([]json.RawMessage, cols)
	for i := 0; i < cols && len(owned) > 0; i++ {
		l, n := binary.Uvarint(owned)
		if n <= 0 {
			return nil, errCorruptVersion
		}
		owned = owned[n:]
		if l == 0 {
			continue // the row image had no such column
		}
		size := l - 1
		if uint64(len(owned)) < size {
			return nil, errCorruptVersion
		}
		v.vals[i] = json.RawMessage(owned[:size:size])
		owned = owned[size:]
	}
	return v, nil
}

// versionPrefix is the prefix of every version of one row: 'V', table, key, NUL.
func versionPrefix(table uint16, key string) []byte {
	b := make([]byte, 0, 4+len(key)+8)
	b = append(b, 'V')
	b = binary.BigEndian.AppendUint16(b, table)
	b = append(b, key...)
	return append(b, 0)
}

func versionKey(table uint16, key string, lsn uint64) []byte {
	return binary.BigEndian.AppendUint64(versionPrefix(table, key), lsn)
}

// versionLSN is the LSN of a 'V' key with the given prefix.
func versionLSN(k []byte) uint64 { return binary.BigEndian.Uint64(k[len(k)-8:]) }

// pruneKey is the prune queue's entry "version lsn of key superseded older ones".
func pruneKey(lsn uint64, table uint16, key string) []byte {
	b := make([]byte, 0, 11+len(key))
	b = append(b, 'P')
	b = binary.BigEndian.AppendUint64(b, lsn)
	b = binary.BigEndian.AppendUint16(b, table)
	return append(b, key...)
}

// changeKey is the change log of a re-emitting table: 'L', table, BE64(lsn), key.
func changeKey(table uint16, lsn uint64, key string) []byte {
	return append(changeLSNKey(table, lsn), key...)
}

func changeLSNKey(table uint16, lsn uint64) []byte {
	b := make([]byte, 0, 11+16)
	b = append(b, 'L')
	b = binary.BigEndian.AppendUint16(b, table)
	return binary.BigEndian.AppendUint64(b, lsn)
}

func truncateKey(table uint16, lsn uint64) []byte {
	b := make([]byte, 0, 11)
	b = append(b, 'T')
	b = binary.BigEndian.AppendUint16(b, table)
	return binary.BigEndian.AppendUint64(b, lsn)
}

// refKey names a row of a referenced table.
type refKey struct {
	table uint16
	key   string
}

// refResult is a reference projected as of a snapshot's commit LSN.
type refResult struct {
	v      *refVersion // the version used; nil or deleted: null
	exact  bool        // v is the newest version with commit LSN ≤ the snapshot's
	reason string      // why not exact: inexactHistory or inexactSnapshot
}

// Reasons a projection is not exact (label values of walhook_bubbleup_reference_inexact_total).
const (
	inexactHistory  = "history_removed"      // older versions were compacted away or pruned
	inexactSnapshot = "before_snapshot_read" // the row's first known version is an initial-snapshot read after the snapshot's LSN
)

// asOf projects row key of table as of lsn: the newest version with commit LSN ≤ lsn, null when
// there is none, it is a delete or the table was truncated after it (at or before lsn). When the
// versions between it and lsn may be incomplete (the next version is flagged), the result is the
// newest version the store has and exact is false.
func (t *refTables) asOf(table, key string, lsn uint64) (refResult, error) {
	tbl := t.layout[table]
	if tbl == nil {
		return refResult{exact: true}, nil
	}
	k := refKey{tbl.index, key}
	t.mu.Lock()
	cached, inCache := t.cache[k]
	seq := t.seq
	trunc := t.truncatedAt(tbl.index, lsn)
	t.mu.Unlock()
	if inCache && cached.lsn <= lsn {
		// The newest version is at or below lsn: it is the answer, and nothing after it can be
		// missing (the reader has read every record up to the watermark the caller waited for).
		return refResult{v: truncated(cached, trunc), exact: true}, nil
	}
	prefix := versionPrefix(tbl.index, key)
	it, err := t.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return refResult{}, fmt.Errorf("reference %s key %q: read versions: %w", table, key, err)
	}
	defer it.Close()
	at := binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), lsn+1)
	var found, next, newest *refVersion
	if it.SeekLT(at) {
		if found, err = decodeVersion(versionLSN(it.Key()), it.Value(), len(tbl.cols)); err != nil {
			return refResult{}, fmt.Errorf("reference %s key %q: %w", table, key, err)
		}
	}
	if it.SeekGE(at) {
		if next, err = decodeVersion(versionLSN(it.Key()), it.Value(), len(tbl.cols)); err != nil {
			return refResult{}, fmt.Errorf("reference %s key %q: %w", table, key, err)
		}
	}
	if next != nil && it.Last() {
		if newest, err = decodeVersion(versionLSN(it.Key()), it.Value(), len(tbl.cols)); err != nil {
			return refResult{}, fmt.Errorf("reference %s key %q: %w", table, key, err)
		}
	} else {
		newest = found
	}
	if !inCache && newest != nil {
		t.remember(k, newest, seq)
	}
	if next != nil && next.flags&(verGapHistory|verGapSnapshot) != 0 {
		reason := inexactHistory
		if next.flags&verGapHistory == 0 {
			reason = inexactSnapshot
		}
		return refResult{v: truncated(newest, t.truncatedAtLocked(tbl.index, ^uint64(0))), reason: reason}, nil
	}
	return refResult{v: truncated(found, trunc), exact: true}, nil
}

// truncated is v, or nil when the table was truncated after v was written.
func truncated(v *refVersion, truncLSN uint64) *refVersion {
	if v == nil || v.lsn < truncLSN {
		return nil
	}
	return v
}

// truncatedAt is the newest truncation of table at or below lsn (0 for none). Callers hold t.mu.
func (t *refTables) truncatedAt(table uint16, lsn uint64) uint64 {
	var out uint64
	for _, l := range t.truncs[table] {
		if l <= lsn {
			out = l
		}
	}
	return out
}

// truncatedAtLocked is truncatedAt taking t.mu.
func (t *refTables) truncatedAtLocked(table uint16, lsn uint64) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.truncatedAt(table, lsn)
}

// remember caches a row's newest version read from Pebble, unless a batch applied since seq
// wrote the row (or another row of its write slot): it may have a newer version now.
func (t *refTables) remember(k refKey, v *refVersion, seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.writes[writeSlot(t.seed, k)] <= seq {
		t.cacheLocked(k, v)
	}
}

// refWriteSlots is the size of refTables.writes: the seq of the last batch that wrote a row of
// each slot, so a lookup caches what it read from Pebble only when no batch wrote the row since.
const refWriteSlots = 1 << 16

func writeSlot(seed maphash.Seed, k refKey) int {
	return int(rowHash(seed, k) % refWriteSlots)
}

func rowHash(seed maphash.Seed, k refKey) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	h.WriteByte(byte(k.table))
	h.WriteByte(byte(k.table >> 8))
	h.WriteString(k.key)
	return h.Sum64()
}

// rowFilter is a Bloom filter of the rows that have a version, owned by the reader goroutine: a
// row it has never seen needs no look for its previous version (the initial read of a topic of
// millions of rows is mostly such rows). 8 MiB: about 0.4 % false positives at 5 million rows.
type rowFilter struct {
	seed maphash.Seed
	bits []uint64
}

const rowFilterBits = 1 << 26

func newRowFilter(seed maphash.Seed) *rowFilter {
	return &rowFilter{seed: seed, bits: make([]uint64, rowFilterBits/64)}
}

func (f *rowFilter) probes(k refKey, fn func(bit uint64) bool) bool {
	h := rowHash(f.seed, k)
	h1, h2 := h, h>>32|1
	for i := range uint64(4) {
		if !fn((h1 + i*h2) % rowFilterBits) {
			return false
		}
	}
	return true
}

func (f *rowFilter) add(k refKey) {
	f.probes(k, func(b uint64) bool { f.bits[b/64] |= 1 << (b % 64); return true })
}

func (f *rowFilter) mayHave(k refKey) bool {
	return f.probes(k, func(b uint64) bool { return f.bits[b/64]&(1<<(b%64)) != 0 })
}

// refCacheRows bounds the cache of newest versions.
const refCacheRows = 16384

// cacheLocked sets the newest version of k, evicting another entry when full. Callers hold t.mu.
func (t *refTables) cacheLocked(k refKey, v *refVersion) {
	if _, ok := t.cache[k]; !ok && len(t.cache) >= refCacheRows {
		for old := range t.cache { // whichever the map yields first
			delete(t.cache, old)
			break
		}
	}
	t.cache[k] = v
}

// refBatch is what the reference reader writes for one poll: versions and their index entries
// in a Pebble batch; once the batch is committed, apply publishes the newest versions to the
// cache, the truncations, and then the watermarks, so a snapshot that waited for a watermark finds
// every version below it.
type refBatch struct {
	t       *refTables
	b       *pebble.Batch
	it      *pebble.Iterator // the committed versions, for each row's newest one
	newest  map[refKey]*refVersion
	forgot  map[refKey]bool
	truncs  []refTrunc
	marks   []refMark
	logged  map[string][]uint64 // table → LSNs written to the change log (refChanges.waiting)
	added   int64               // versions written
	records int                 // changes written
}

type refTrunc struct {
	table uint16
	lsn   uint64
}

type refMark struct {
	table     string
	partition int32
	lsn       uint64
}

func (t *refTables) newBatch() (*refBatch, error) {
	it, err := t.db.NewIter(&pebble.IterOptions{LowerBound: []byte{'V'}, UpperBound: []byte{'W'}})
	if err != nil {
		return nil, fmt.Errorf("read reference versions: %w", err)
	}
	return &refBatch{t: t, b: t.db.NewBatch(), it: it, newest: map[refKey]*refVersion{}}, nil
}

// newestOf is the newest version of k: written by this batch, cached, or committed.
func (rb *refBatch) newestOf(tbl *refTable, k refKey) (*refVersion, error) {
	if v, ok := rb.newest[k]; ok {
		return v, nil
	}
	if rb.forgot[k] || !rb.t.rows.mayHave(k) {
		return nil, nil
	}
	rb.t.mu.Lock()
	v, ok := rb.t.cache[k]
	rb.t.mu.Unlock()
	if ok {
		return v, nil
	}
	prefix := versionPrefix(k.table, k.key)
	if !rb.it.SeekLT(prefixEnd(prefix)) || !hasPrefix(rb.it.Key(), prefix) {
		return nil, nil
	}
	return decodeVersion(versionLSN(rb.it.Key()), rb.it.Value(), len(tbl.cols))
}

func hasPrefix(b, prefix []byte) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == string(prefix)
}

// change writes the version a change record (written at, its timestamp) gives its row. gap says
// the reader may have missed records just before it (refReader: offsets skipped by compaction).
func (rb *refBatch) change(tbl *refTable, key string, c *avro.Change, at time.Time, gap bool) error {
	k := refKey{tbl.index, key}
	prev, err := rb.newestOf(tbl, k)
	if err != nil {
		return fmt.Errorf("reference %s key %q: %w", tbl.name, key, err)
	}
	if prev != nil && c.CommitLSN < prev.lsn {
		return nil // a transaction the cdc stage sent again after a restart: the version is known
	}
	v := tbl.versionOf(c, at, prev)
	if gap {
		v.flags |= verGapHistory
	}
	switch {
	case prev == nil && c.Op == avro.OpRead:
		v.flags |= verGapSnapshot
	case prev != nil && prev.lsn == v.lsn:
		v.flags |= prev.flags & (verGapHistory | verGapSnapshot) // a later change of the same transaction
	}
	if err := rb.b.Set(versionKey(tbl.index, key, v.lsn), encodeVersion(v), nil); err != nil {
		return err
	}
	if prev != nil && prev.lsn < v.lsn {
		if err := rb.b.Set(pruneKey(v.lsn, tbl.index, key), binary.BigEndian.AppendUint64(nil, uint64(v.at)), nil); err != nil {
			return err
		}
	}
	if tbl.reemit && c.Op != avro.OpRead {
		val := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(c.CommitTime.UnixMicro())), uint64(v.at))
		if err := rb.b.Set(changeKey(tbl.index, v.lsn, key), val, nil); err != nil {
			return err
		}
		if rb.logged == nil {
			rb.logged = map[string][]uint64{}
		}
		rb.logged[tbl.name] = append(rb.logged[tbl.name], v.lsn)
	}
	if prev == nil || prev.lsn < v.lsn {
		rb.added++
	}
	rb.newest[k] = v
	rb.t.rows.add(k)
	rb.records++
	return nil
}

// forget drops every version of a row: a tombstone (null value) on the compacted reference topic,
// which the cdc stage never writes. The row reads as missing at every LSN from then on.
func (rb *refBatch) forget(tbl *refTable, key string) error {
	prefix := versionPrefix(tbl.index, key)
	if err := rb.b.DeleteRange(prefix, prefixEnd(prefix), nil); err != nil {
		return err
	}
	k := refKey{tbl.index, key}
	delete(rb.newest, k)
	if rb.forgot == nil {
		rb.forgot = map[refKey]bool{}
	}
	rb.forgot[k] = true
	return nil
}

// truncate records that tbl was truncated at lsn: a lookup at lsn or later ignores every version
// below lsn (versions at lsn are rows the truncating transaction wrote after its TRUNCATE).
func (rb *refBatch) truncate(tbl *refTable, lsn uint64) error {
	rb.truncs = append(rb.truncs, refTrunc{tbl.index, lsn})
	return rb.b.Set(truncateKey(tbl.index, lsn), nil, nil)
}

// truncateRows gives every row of tbl that is alive below lsn a deleted version at lsn, so that
// a table that re-emits logs a change of each: the roots pointing at them re-emit with null.
// It reads every version of the table once.
func (rb *refBatch) truncateRows(tbl *refTable, lsn uint64, commitTime, at time.Time) error {
	gone := &avro.Change{Op: avro.OpDelete, Table: tbl.name, CommitLSN: lsn, CommitTime: commitTime}
	seen := map[string]bool{}
	kill := func(key string) error {
		seen[key] = true
		prev, err := rb.newestOf(tbl, refKey{tbl.index, key})
		if err != nil || prev == nil || prev.deleted() || prev.lsn >= lsn {
			return err
		}
		return rb.change(tbl, key, gone, at, false)
	}
	prefix := binary.BigEndian.AppendUint16([]byte{'V'}, tbl.index)
	it, err := rb.t.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	last := ""
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		if len(k) < len(prefix)+9 {
			continue
		}
		if key := string(k[len(prefix) : len(k)-9]); key != last {
			last = key
			if err := kill(key); err != nil {
				_ = it.Close()
				return err
			}
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	var fresh []string // rows of this batch not committed yet
	for k := range rb.newest {
		if k.table == tbl.index && !seen[k.key] {
			fresh = append(fresh, k.key)
		}
	}
	for _, key := range fresh {
		if err := kill(key); err != nil {
			return err
		}
	}
	return nil
}

// mark records a watermark, published after the batch's versions.
func (rb *refBatch) mark(table string, partition int32, lsn uint64) {
	rb.marks = append(rb.marks, refMark{table, partition, lsn})
}

// apply commits the batch and publishes it. The batch is closed either way.
func (rb *refBatch) apply() error {
	defer rb.close()
	if !rb.b.Empty() {
		if err := rb.b.Commit(pebble.NoSync); err != nil {
			return fmt.Errorf("write reference versions: %w", err)
		}
	}
	t := rb.t
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	for k := range rb.forgot {
		delete(t.cache, k)
	}
	for k, v := range rb.newest {
		// Only rows a lookup cached are kept up to date here: caching every row written would
		// churn the cache through the initial read of a large table.
		if _, ok := t.cache[k]; ok {
			t.cache[k] = v
		}
		t.writes[writeSlot(t.seed, k)] = t.seq
	}
	for _, tr := range rb.truncs {
		if !slices.Contains(t.truncs[tr.table], tr.lsn) {
			t.truncs[tr.table] = append(t.truncs[tr.table], tr.lsn)
			slices.Sort(t.truncs[tr.table])
		}
	}
	t.versions += rb.added
	t.re.logWaiting(rb.logged)
	for _, m := range rb.marks {
		t.markLocked(m.table, m.partition, m.lsn)
	}
	return nil
}

func (rb *refBatch) close() {
	_ = rb.it.Close()
	_ = rb.b.Close()
}
