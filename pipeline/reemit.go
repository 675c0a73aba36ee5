package pipeline

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/avro"
)

// Re-emission on reference change (config.Reference.Reemit): doc.go "Re-emission" explains the
// design; this file holds all of it except one-line hooks in loop.go (poll wake-up, due
// partitions, assignment), partition.go (process, state, commit, abort), restore.go and refs.go.

// reemitMarkSuffix is the root-key part of the changelog key of a partition's reference LSN
// handled ("<event_prefix>\x00\x00reemit"). PostgreSQL text holds no NUL, so no root key starts
// with one.
const reemitMarkSuffix = "\x00reemit"

// refChange is one change of a referenced row, as the reference reader saw it.
type refChange struct {
	table string
	key   string
	lsn   uint64
	time  time.Time
}

// refChanges finds the changes of the reference tables some reference re-emits on, for the
// partition workers to handle the ones in (their handled LSN, the tables' low watermark]. The
// changes themselves are the reference store's change log ('L' keys, refstore.go), one entry per
// row and source transaction: a row changed twice re-emits its roots twice, each version with the
// row as of its own change. In memory are only the LSNs not yet below the low watermark, so the
// loop's poll can wake when they become due.
//
// Lock order: refTables.mu, then mu (apply calls logWaiting and covered under refTables.mu); mu
// is a leaf.
type refChanges struct {
	wake   chan struct{} // capacity 1: changes became due; the loop's poll wakes on it
	db     *pebble.DB
	layout refLayout

	mu      sync.Mutex
	waiting map[string][]uint64 // table → LSNs not yet below its low watermark; guarded by mu
}

// newRefChanges returns nil when tables is empty: nothing re-emits.
func newRefChanges(db *pebble.DB, layout refLayout, tables []string) *refChanges {
	if len(tables) == 0 {
		return nil
	}
	r := &refChanges{wake: make(chan struct{}, 1), db: db, layout: layout, waiting: map[string][]uint64{}}
	for _, t := range tables {
		r.waiting[t] = nil
	}
	return r
}

// logWaiting notes LSNs the reader wrote to the change log, by table.
func (r *refChanges) logWaiting(logged map[string][]uint64) {
	if r == nil || len(logged) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for t, lsns := range logged {
		if _, ok := r.waiting[t]; ok {
			r.waiting[t] = append(r.waiting[t], lsns...)
		}
	}
}

// covered tells the loop when table's low watermark passed a logged change.
func (r *refChanges) covered(table string, low uint64) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	waiting, ok := r.waiting[table]
	if !ok {
		return
	}
	kept := waiting[:0]
	due := false
	for _, lsn := range waiting {
		if lsn <= low {
			due = true
		} else {
			kept = append(kept, lsn)
		}
	}
	r.waiting[table] = kept
	if due {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// between returns the changes of tables with an LSN in (after, upTo], in LSN order.
func (r *refChanges) between(tables []string, after, upTo uint64) ([]refChange, error) {
	var out []refChange
	for _, name := range tables {
		tbl := r.layout[name]
		if tbl == nil || upTo <= after {
			continue
		}
		lo, hi := changeLSNKey(tbl.index, after+1), changeLSNKey(tbl.index, upTo+1)
		if upTo == math.MaxUint64 {
			hi = prefixEnd(lo[:3])
		}
		it, err := r.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return nil, fmt.Errorf("read the change log of %s: %w", name, err)
		}
		for valid := it.First(); valid; valid = it.Next() {
			k, v := it.Key(), it.Value()
			if len(k) < 11 || len(v) != 16 {
				continue
			}
			out = append(out, refChange{table: name, key: string(k[11:]), lsn: binary.BigEndian.Uint64(k[3:11]),
				time: time.UnixMicro(int64(binary.BigEndian.Uint64(v[:8]))).UTC()})
		}
		if err := it.Close(); err != nil {
			return nil, fmt.Errorf("read the change log of %s: %w", name, err)
		}
	}
	slices.SortFunc(out, func(a, b refChange) int {
		return cmp.Or(cmp.Compare(a.lsn, b.lsn), strings.Compare(a.table, b.table), strings.Compare(a.key, b.key))
	})
	return out, nil
}

// any reports whether tables have a change with an LSN in (after, upTo].
func (r *refChanges) any(tables []string, after, upTo uint64) bool {
	for _, name := range tables {
		tbl := r.layout[name]
		if tbl == nil || upTo <= after {
			continue
		}
		lo := changeLSNKey(tbl.index, after+1)
		it, err := r.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo[:3])})
		if err != nil {
			return true // let the worker look and report the error
		}
		found := it.First() && binary.BigEndian.Uint64(it.Key()[3:11]) <= upTo
		_ = it.Close()
		if found {
			return true
		}
	}
	return false
}

// low is the lowest watermark of table's partitions: every change up to it has been read.
func (t *refTables) low(tables []string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	low := uint64(0)
	for i, table := range tables {
		m := t.marks[table]
		if len(m) == 0 {
			return 0
		}
		tl := slices.Min(m)
		if i == 0 || tl < low {
			low = tl
		}
	}
	return low
}

// stageReemit is the stage's part of re-emission: which change topics have roots that re-emit,
// and which of their partitions this member owns (a partition with no records still owns roots
// that must be re-emitted).
type stageReemit struct {
	tables map[string][]string // change topic → tables its root re-emits on; read-only

	mu       sync.Mutex
	assigned map[topicPartition]bool // guarded by mu; written by kgo's rebalance callbacks
}

// newStageReemit returns nil when no reference re-emits.
func newStageReemit(roots []*rootModel) *stageReemit {
	r := &stageReemit{tables: map[string][]string{}, assigned: map[topicPartition]bool{}}
	for _, rm := range roots {
		if t := reemitTables(rm); len(t) > 0 {
			r.tables[rm.changeTopic] = t
		}
	}
	if len(r.tables) == 0 {
		return nil
	}
	return r
}

func (s *Stage) reemitTables() []string {
	if s.reemit == nil {
		return nil
	}
	var out []string
	for _, ts := range s.reemit.tables {
		for _, t := range ts {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

func reemitTables(rm *rootModel) []string {
	var out []string
	for _, ref := range rm.refs {
		if ref.Reemit && !slices.Contains(out, ref.Table) {
			out = append(out, ref.Table)
		}
	}
	return out
}

// reemitAssigned is kgo's OnPartitionsAssigned callback.
func (s *Stage) reemitAssigned(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	if s.reemit == nil {
		return
	}
	s.reemit.mu.Lock()
	defer s.reemit.mu.Unlock()
	for t, ps := range m {
		for _, p := range ps {
			s.reemit.assigned[topicPartition{t, p}] = true
		}
	}
}

// reemitRevoked runs in kgo's revoke and lost callbacks.
func (s *Stage) reemitRevoked(m map[string][]int32) {
	if s.reemit == nil {
		return
	}
	s.reemit.mu.Lock()
	defer s.reemit.mu.Unlock()
	for t, ps := range m {
		for _, p := range ps {
			delete(s.reemit.assigned, topicPartition{t, p})
		}
	}
}

// pollContext is the context of one poll of the loop: it also ends when reference changes
// became due, so an idle stage re-emits without waiting for change records. release stops the
// watcher and waits for it.
func (s *Stage) pollContext(ctx context.Context) (pctx context.Context, release func()) {
	if s.refs == nil || s.refs.re == nil {
		return ctx, func() {}
	}
	pctx, cancel := context.WithCancel(ctx)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-s.refs.re.wake:
			cancel()
		case <-stop:
		case <-pctx.Done():
		}
	}()
	return pctx, func() {
		close(stop)
		<-done
		cancel()
	}
}

// addReemitDue adds to batches, with no records, every owned partition that has reference
// changes to handle. Runs on the loop goroutine.
func (s *Stage) addReemitDue(workers map[topicPartition]*partWorker, batches map[topicPartition][]*kgo.Record) {
	if s.reemit == nil || s.refs == nil || s.refs.re == nil {
		return
	}
	s.reemit.mu.Lock()
	owned := make([]topicPartition, 0, len(s.reemit.assigned))
	for tp := range s.reemit.assigned {
		owned = append(owned, tp)
	}
	s.reemit.mu.Unlock()
	for _, tp := range owned {
		tables := s.reemit.tables[tp.topic]
		if _, ok := batches[tp]; ok || len(tables) == 0 {
			continue
		}
		from := uint64(0)
		if w := workers[tp]; w != nil && w.re != nil {
			from = w.re.done.Load()
		}
		if to := s.refs.low(tables); to > from && s.refs.re.any(tables, from, to) {
			batches[tp] = nil
		}
	}
}

// reemitWorker is a partition worker's part of re-emission. Owned by the worker goroutine,
// except done.
type reemitWorker struct {
	refs   []int    // indexes in rootModel.refs of the references that re-emit
	tables []string // their tables

	// Committed: what the last committed Kafka transaction left.
	handled uint64 // reference changes up to this LSN are handled for the partition
	pos     uint64 // highest commit LSN of a record processed on the change partition
	next    int64  // next offset of the change partition to process; -1: the group's committed one
	txn     *reemitTxn
	done    atomic.Uint64 // handled, for the loop's due check
}

// reemitTxn is the open Kafka transaction's view; commit keeps it, abort drops it.
type reemitTxn struct {
	handled, pos uint64
	next         int64
	mark         bool                // handled moved past a change: write the mark
	orig         map[string][]string // root key → its reference keys when loaded (index diff)
}

func (re *reemitWorker) begin() *reemitTxn {
	if re.txn == nil {
		re.txn = &reemitTxn{handled: re.handled, pos: re.pos, next: re.next, orig: map[string][]string{}}
	}
	return re.txn
}

// refKeys is the key each re-emitting reference of st points at ("" for none). A root that is
// gone, soft-deleted or without a root row points nowhere: it is never re-emitted.
func (w *partWorker) refKeys(st *rootState) []string {
	out := make([]string, len(w.re.refs))
	if st == nil || st.Root == nil || st.Gone || st.Partial || st.softDeleted(w.rm.root) {
		return out
	}
	for i, j := range w.re.refs {
		if v, ok := st.Root.get(w.rm.refs[j].Column); ok && string(v) != "null" {
			out[i] = keyText(v)
		}
	}
	return out
}

// noteRefs remembers what a root pointed at when the open transaction loaded it.
func (w *partWorker) noteRefs(key string, st *rootState) {
	if w.re == nil {
		return
	}
	w.re.begin().orig[key] = w.refKeys(st)
}

// Reference changes are handled in LSN order, interleaved with the partition's own records: a
// change at L is handled once every record of the partition at or below L has been applied
// (so a root changed in the same source transaction has had its own TxnEnd, its applied LSN is
// L and it is skipped) and none above L has (so a root changed later still gets the version of
// L). reemitBefore handles, before a record of a newer source transaction, the changes below
// its LSN; reemit, at the end of the batch, the rest once the partition is known to hold nothing
// more at or below them: consumed to the end offset the broker reports after the reference
// watermark was read.

// reemitBefore runs before rec is applied: when rec starts a newer source transaction (LSN P),
// it waits until the reference tables have been read up to P, then handles their changes below P.
func (w *partWorker) reemitBefore(ctx context.Context, rec *kgo.Record, out []*kgo.Record, snaps map[string]int) ([]*kgo.Record, error) {
	if w.re == nil {
		return out, nil
	}
	t := w.re.begin()
	t.next = max(t.next, rec.Offset+1)
	lsn, ok := parseLSN(header(rec, headerLSN))
	if !ok || lsn <= t.pos {
		return out, nil
	}
	t.pos = lsn
	if err := w.s.refs.wait(ctx, w.re.tables, lsn-1); err != nil {
		return nil, err
	}
	return w.reemitUpTo(ctx, lsn-1, out, snaps)
}

// reemit runs at the end of process: it handles the changes the batch's records did not pass
// when the partition is consumed to its end, and appends the mark when it moved.
func (w *partWorker) reemit(ctx context.Context, out []*kgo.Record, snaps map[string]int) ([]*kgo.Record, error) {
	if w.re == nil {
		return out, nil
	}
	t := w.re.begin()
	target := w.s.refs.low(w.re.tables)
	if target > t.handled && w.s.refs.re.any(w.re.tables, t.handled, target) {
		atEnd, err := w.consumedToEnd(ctx, t.next)
		if err != nil {
			return nil, err
		}
		if atEnd {
			if out, err = w.reemitUpTo(ctx, target, out, snaps); err != nil {
				return nil, err
			}
		}
	}
	if t.mark {
		out = append(out, &kgo.Record{Topic: w.s.changelog, Partition: w.partition,
			Key: changelogKey(w.rm.cfg.EventPrefix, reemitMarkSuffix), Value: binary.BigEndian.AppendUint64(nil, t.handled)})
	}
	return out, nil
}

// reemitUpTo handles the reference changes in (handled, upTo], upTo at most the tables' low
// watermark.
func (w *partWorker) reemitUpTo(ctx context.Context, upTo uint64, out []*kgo.Record, snaps map[string]int) ([]*kgo.Record, error) {
	t := w.re.txn
	upTo = min(upTo, w.s.refs.low(w.re.tables))
	if upTo <= t.handled {
		return out, nil
	}
	changes, err := w.s.refs.re.between(w.re.tables, t.handled, upTo)
	if err != nil {
		return nil, err
	}
	for _, c := range changes {
		if out, err = w.reemitFor(ctx, c, out, snaps); err != nil {
			return nil, fmt.Errorf("reference %s key %q changed at LSN %s: %w", c.table, c.key, lsnText(c.lsn), err)
		}
		t.mark = true
	}
	t.handled = upTo
	return out, nil
}

// reemitFor re-emits, once, every root of the partition pointing at the changed row whose
// applied LSN is below the change's.
func (w *partWorker) reemitFor(ctx context.Context, c refChange, out []*kgo.Record, snaps map[string]int) ([]*kgo.Record, error) {
	for i, j := range w.re.refs {
		if w.rm.refs[j].Table != c.table {
			continue
		}
		keys, err := w.pointingAt(i, j, c.key)
		if err != nil {
			return nil, err
		}
		for _, key := range keys {
			st, err := w.peek(key)
			if err != nil {
				return nil, fmt.Errorf("root %q: %w", key, err)
			}
			// A root with a pending transaction gets the new reference at its TxnEnd.
			if st == nil || w.refKeys(st)[i] != c.key || st.Applied >= c.lsn || st.Pending != nil {
				continue
			}
			if st, err = w.state(key); err != nil {
				return nil, fmt.Errorf("root %q: %w", key, err)
			}
			if err := w.s.refs.wait(ctx, w.refTables(), c.lsn); err != nil {
				return nil, fmt.Errorf("root %q: %w", key, err)
			}
			st.Version++
			st.Applied = c.lsn
			rec, err := w.emit(ctx, key, st, avro.VerbUpdated, c.lsn, c.time)
			if err != nil {
				return nil, fmt.Errorf("root %q v%d: %w", key, st.Version, err)
			}
			out = append(out, rec)
			snaps[header(rec, headerEventType)]++
		}
	}
	return out, nil
}

// pointingAt lists the roots whose reference i (rm.refs[j]) points at refKey: the committed
// index, and the roots of the open transaction (whose index entries are written at commit).
// Callers check each against its current state.
func (w *partWorker) pointingAt(i, j int, refKey string) ([]string, error) {
	prefix := refIndexKey(w.rm.index, w.partition, j, refKey, "")
	it, err := w.s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("read reference index: %w", err)
	}
	seen := map[string]bool{}
	for valid := it.First(); valid; valid = it.Next() {
		seen[string(it.Key()[len(prefix):])] = true
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("read reference index: %w", err)
	}
	for key, st := range w.overlay {
		if w.refKeys(st)[i] == refKey {
			seen[key] = true
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, nil
}

// peek returns a root's current state without adding it to the overlay; nil when unknown.
func (w *partWorker) peek(key string) (*rootState, error) {
	if st, ok := w.overlay[key]; ok {
		return st, nil
	}
	v, closer, err := w.s.db.Get(stateKey(w.rm.index, w.partition, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	defer closer.Close()
	return decodeState(v)
}

// consumedToEnd reports whether the worker has processed its change partition up to the end
// offset the broker reports now.
func (w *partWorker) consumedToEnd(ctx context.Context, next int64) (bool, error) {
	adm := kadm.NewClient(w.s.admin)
	topic := w.rm.changeTopic
	if next < 0 {
		offs, err := adm.FetchOffsets(ctx, w.s.groupID)
		if err != nil {
			return false, fmt.Errorf("committed offset of %s[%d] in group %s: %w", topic, w.partition, w.s.groupID, err)
		}
		next = 0
		if o, ok := offs.Lookup(topic, w.partition); ok && o.Err == nil && o.At > 0 {
			next = o.At
		}
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return false, fmt.Errorf("end offset of %s[%d]: %w", topic, w.partition, err)
	}
	o, ok := ends.Lookup(topic, w.partition)
	if !ok || o.Err != nil {
		return false, fmt.Errorf("end offset of %s[%d]: %v", topic, w.partition, o.Err)
	}
	return next >= o.Offset, nil
}

// commitReemit writes, after the Kafka transaction committed, the index entries of the roots
// whose references changed and the mark, and keeps the transaction's positions.
func (w *partWorker) commitReemit() error {
	if w.re == nil || w.re.txn == nil {
		return nil
	}
	t := w.re.txn
	w.re.txn = nil
	b := w.s.db.NewBatch()
	defer b.Close()
	for key := range w.encoded {
		now, old := w.refKeys(w.overlay[key]), t.orig[key]
		for i, j := range w.re.refs {
			if i < len(old) && old[i] == now[i] {
				continue
			}
			if i < len(old) && old[i] != "" {
				if err := b.Delete(refIndexKey(w.rm.index, w.partition, j, old[i], key), nil); err != nil {
					return err
				}
			}
			if now[i] != "" {
				if err := b.Set(refIndexKey(w.rm.index, w.partition, j, now[i], key), nil, nil); err != nil {
					return err
				}
			}
		}
	}
	if t.mark {
		if err := b.Set(reemitMarkKey(w.rm.index, w.partition), binary.BigEndian.AppendUint64(nil, t.handled), nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("root %s partition %d: write reference index at LSN %s: %w", w.rm.cfg.Table, w.partition, lsnText(t.handled), err)
	}
	w.re.handled, w.re.pos, w.re.next = t.handled, t.pos, t.next
	w.re.done.Store(t.handled)
	return nil
}

// abortReemit drops the open transaction's positions: its input is consumed again.
func (w *partWorker) abortReemit() {
	if w.re != nil {
		w.re.txn = nil
	}
}

// restoreReemit runs after the changelog restored the partition's state range: it moves the mark
// out of that range and, when a reference of the root re-emits, rebuilds the reference index.
func (w *partWorker) restoreReemit() error {
	fail := func(what string, err error) error {
		return fmt.Errorf("root %s partition %d: %s: %w", w.rm.cfg.Table, w.partition, what, err)
	}
	markAt := stateKey(w.rm.index, w.partition, reemitMarkSuffix)
	var handled uint64
	v, closer, err := w.s.db.Get(markAt)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return fail("read re-emission mark", err)
	default:
		if len(v) == 8 {
			handled = binary.BigEndian.Uint64(v)
		}
		closer.Close()
		if err := w.s.db.Delete(markAt, pebble.NoSync); err != nil {
			return fail("move re-emission mark", err)
		}
	}
	w.re = nil
	var refs []int
	for j, ref := range w.rm.refs {
		if ref.Reemit {
			refs = append(refs, j)
		}
	}
	if len(refs) == 0 {
		return nil
	}
	w.re = &reemitWorker{refs: refs, tables: reemitTables(w.rm), handled: handled, next: -1}
	w.re.done.Store(handled)
	ix := refIndexPrefix(w.rm.index, w.partition)
	b := w.s.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(ix, prefixEnd(ix), nil); err != nil {
		return fail("drop reference index", err)
	}
	if err := b.Set(reemitMarkKey(w.rm.index, w.partition), binary.BigEndian.AppendUint64(nil, handled), nil); err != nil {
		return fail("write re-emission mark", err)
	}
	prefix := statePrefix(w.rm.index, w.partition)
	it, err := w.s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fail("read state", err)
	}
	for valid := it.First(); valid; valid = it.Next() {
		key := string(it.Key()[len(prefix):])
		st, err := decodeState(it.Value())
		if err != nil {
			_ = it.Close()
			return fail(fmt.Sprintf("root %q", key), err)
		}
		for i, rk := range w.refKeys(st) {
			if rk != "" {
				if err := b.Set(refIndexKey(w.rm.index, w.partition, refs[i], rk, key), nil, nil); err != nil {
					_ = it.Close()
					return fail("write reference index", err)
				}
			}
		}
	}
	if err := it.Close(); err != nil {
		return fail("read state", err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fail("write reference index", err)
	}
	return nil
}

// refIndexPrefix is the Pebble range of a partition's reference index: 'R', root index,
// partition.
func refIndexPrefix(rootIndex int, partition int32) []byte {
	b := make([]byte, 0, 32)
	b = append(b, 'R')
	b = binary.BigEndian.AppendUint16(b, uint16(rootIndex))
	return binary.BigEndian.AppendUint32(b, uint32(partition))
}

// refIndexKey is the index entry "reference ref of root key points at refKey": prefix,
// reference index, refKey, NUL, root key (empty value). With rootKey "" it is the prefix of all
// roots pointing at refKey.
func refIndexKey(rootIndex int, partition int32, ref int, refKey, rootKey string) []byte {
	b := binary.BigEndian.AppendUint16(refIndexPrefix(rootIndex, partition), uint16(ref))
	b = append(b, refKey...)
	b = append(b, 0)
	return append(b, rootKey...)
}

// reemitMarkKey holds the partition's reference LSN handled: 'M', root index, partition.
func reemitMarkKey(rootIndex int, partition int32) []byte {
	b := make([]byte, 0, 8)
	b = append(b, 'M')
	b = binary.BigEndian.AppendUint16(b, uint16(rootIndex))
	return binary.BigEndian.AppendUint32(b, uint32(partition))
}

// parseLSN parses the PostgreSQL text form of an LSN ("16/B374D848").
func parseLSN(s string) (uint64, bool) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, false
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return h<<32 | l, true
}
