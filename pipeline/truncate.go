package pipeline

import (
	"context"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/avro"
)

// A TRUNCATE of a root's table reaches every partition of its change topic as a truncate record
// at its place in the source transaction, and after the transaction's TxnEnds as a truncate-end
// record (cdc/truncate.go, docs/cdc.md "TRUNCATE"). The worker applies the truncate to every
// root of its partition that it changes: a root table's truncate hard-deletes every root row, a
// subordinate table's removes that table's rows from every root that had some. At the
// truncate-end, every root still pending in that transaction (none of the transaction's rows
// touched it, so no TxnEnd ended it) gets its version like at a TxnEnd: one version per root per
// transaction, whatever it truncated. A truncate or truncate-end at or below a root's applied LSN
// is a replay and leaves the root alone.

// truncate applies a TRUNCATE of table at lsn to every root of the partition it changes.
func (w *partWorker) truncate(table string, lsn uint64) error {
	t := w.rm.tables[table]
	if t == nil {
		return fmt.Errorf("TRUNCATE of table %s on the change topic of root %s (LSN %s): the table is not part of this root in the model",
			table, w.rm.cfg.Table, lsnText(lsn))
	}
	return w.eachRoot(func(_ string, st *rootState) bool { return truncates(w.rm, t, st, lsn) },
		func(st *rootState) { applyTruncate(w.rm, t, st, lsn) })
}

// finishTruncate ends the truncating transaction end.CommitLSN for every root it left pending
// and appends their snapshots to out, in root key order.
func (w *partWorker) finishTruncate(ctx context.Context, rec *kgo.Record, end avro.TxnEnd, out []*kgo.Record) ([]*kgo.Record, error) {
	pendingAt := func(_ string, st *rootState) bool { return st.Pending != nil && st.Pending.LSN == end.CommitLSN }
	var keys []string
	// The roots left pending are in the overlay, or in the committed state when a Kafka
	// transaction ended after (some of) the transaction's truncate records.
	err := w.eachRoot(pendingAt, func(*rootState) {})
	if err != nil {
		return out, err
	}
	for key, st := range w.overlay {
		if pendingAt(key, st) {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	for _, key := range keys {
		e := end
		e.RootKey = key
		snap, err := w.finish(ctx, key, e, false)
		if err != nil {
			return out, fmt.Errorf("end of TRUNCATE at LSN %s, root %q: %w", lsnText(end.CommitLSN), key, err)
		}
		if snap != nil {
			w.emitted(ctx, rec, snap)
			out = append(out, snap)
		}
	}
	return out, nil
}

// eachRoot calls change for every root of the partition (the open transaction's and the
// committed ones) for which affects reports true; a committed root is added to the overlay first.
func (w *partWorker) eachRoot(affects func(key string, st *rootState) bool, change func(*rootState)) error {
	for key, st := range w.overlay {
		if affects(key, st) {
			change(st)
		}
	}
	return w.eachStored(affects, change)
}

// eachStored is eachRoot for the committed roots the overlay does not hold. It reads the
// partition's whole state range: a TRUNCATE costs a scan of the partition's roots.
func (w *partWorker) eachStored(affects func(key string, st *rootState) bool, change func(*rootState)) error {
	prefix := statePrefix(w.rm.index, w.partition)
	it, err := w.s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fmt.Errorf("read state: %w", err)
	}
	for valid := it.First(); valid; valid = it.Next() {
		key := string(it.Key()[len(prefix):])
		if _, ok := w.overlay[key]; ok {
			continue
		}
		st, ok := w.cache[key]
		if ok {
			st = st.clone()
		} else if st, err = decodeState(it.Value()); err != nil {
			_ = it.Close()
			return fmt.Errorf("root %q: %w", key, err)
		}
		if !affects(key, st) {
			continue
		}
		w.overlay[key] = st
		w.noteRefs(key, st) // before the change: what the root pointed at when loaded
		change(st)
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("read state: %w", err)
	}
	return nil
}

// truncates reports whether a TRUNCATE of t at lsn changes the root: it has a root row (t is
// the root table) or rows of t, and has not applied lsn yet.
func truncates(rm *rootModel, t *tableModel, s *rootState, lsn uint64) bool {
	if s.Applied != 0 && lsn <= s.Applied {
		return false
	}
	if t == rm.root {
		return s.Root != nil && !s.Gone
	}
	return len(s.Subs[t.table]) > 0
}

// applyTruncate applies a TRUNCATE of t at lsn to a root it changes: like a DELETE of the root
// row, or of every row of t under the root.
func applyTruncate(rm *rootModel, t *tableModel, s *rootState, lsn uint64) {
	s.pend(rm, lsn)
	if t == rm.root {
		s.Pending.HardDeleted = true
		s.Gone = true
		return
	}
	delete(s.Subs, t.table)
}
