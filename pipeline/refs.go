package pipeline

import (
	"context"
	"errors"
	"fmt"
	"github.com/walhook/walhook/internal/chunked"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/walhook/walhook/avro"
)

// refTables is the local copy of every cross-service reference table: every version of every row
// read from the reference topics by one goroutine (refReader.run), on disk (refstore.go), with the
// watermark of each partition; the partition workers read it.
//
// Lock order: mu, then re.mu (apply calls re.logWaiting and re.covered); nothing else is called
// while holding mu.
type refTables struct {
	db     *pebble.DB
	layout refLayout

	mu       sync.Mutex
	marks    map[string][]uint64    // table → per-partition watermark LSN; guarded by mu
	changed  chan struct{}          // closed and replaced when a watermark advances; guarded by mu
	cache    map[refKey]*refVersion // newest version of rows lookups read recently, kept current by the reader; guarded by mu
	truncs   map[uint16][]uint64    // table → sorted LSNs it was truncated at; guarded by mu
	seq      uint64                 // bumped by every applied batch; guarded by mu
	versions int64                  // versions on disk; guarded by mu
	re       *refChanges            // changes of tables that re-emit (reemit.go); nil for none; set before the reader starts
	pruning  refPruning             // what refprune.go keeps; owned by the reader goroutine
	horizon  func() (uint64, bool)  // refprune.go: LSN no pending snapshot needs a superseded version below
	metrics  *metrics               // nil in unit tests
	now      func() time.Time       // the clock of pruning by age
	history  time.Duration          // bubbleup.reference_history
	seed     maphash.Seed           // of writeSlot and rows
	writes   []uint64               // per write slot, the seq of the batch that last wrote a row there; guarded by mu
	rows     *rowFilter             // rows that have versions; owned by the reader goroutine
}

// newRefTables drops what db holds of a previous run's reference store (it is rebuilt from the
// reference topics) and returns an empty one.
func newRefTables(db *pebble.DB, layout refLayout, partitions map[string]int, history time.Duration) (*refTables, error) {
	for _, p := range []byte{'L', 'P', 'T', 'V'} {
		if err := db.DeleteRange([]byte{p}, []byte{p + 1}, pebble.NoSync); err != nil {
			return nil, fmt.Errorf("pipeline: drop the reference store of the previous run: %w", err)
		}
	}
	t := &refTables{
		db: db, layout: layout, marks: map[string][]uint64{}, changed: make(chan struct{}),
		cache: map[refKey]*refVersion{}, truncs: map[uint16][]uint64{}, now: time.Now, history: history,
		horizon: func() (uint64, bool) { return 0, false }, seed: maphash.MakeSeed(), writes: make([]uint64, refWriteSlots),
	}
	t.rows = newRowFilter(t.seed)
	for table, n := range partitions {
		t.marks[table] = make([]uint64, n)
	}
	return t, nil
}

// markLocked records partition's watermark of table. Callers hold t.mu.
func (t *refTables) markLocked(table string, partition int32, lsn uint64) {
	m := t.marks[table]
	if int(partition) >= len(m) {
		grown := make([]uint64, partition+1)
		copy(grown, m)
		m = grown
		t.marks[table] = m
	}
	if lsn > m[partition] {
		m[partition] = lsn
		close(t.changed)
		t.changed = make(chan struct{})
		t.re.covered(table, slices.Min(m))
	}
}

// caughtUp reports whether every partition of table has a watermark at or above lsn, and
// otherwise returns the channel closed at the next advance.
func (t *refTables) caughtUp(table string, lsn uint64) (bool, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range t.marks[table] {
		if m < lsn {
			return false, t.changed
		}
	}
	return true, nil
}

// wait blocks until every partition of every table has seen lsn, or ctx ends.
func (t *refTables) wait(ctx context.Context, tables []string, lsn uint64) error {
	for _, table := range tables {
		for {
			ok, ch := t.caughtUp(table, lsn)
			if ok {
				break
			}
			select {
			case <-ch:
			case <-ctx.Done():
				return fmt.Errorf("waiting for reference table %s to reach LSN %s: %w", table, lsnText(lsn), context.Cause(ctx))
			}
		}
	}
	return nil
}

// refReader consumes the reference topics from their start, without a group, into refTables.
type refReader struct {
	cl     *kgo.Client
	tables map[string]*refTable // topic → table
	refs   *refTables
	dec    *decoder
	log    *zap.Logger
	parts  map[topicPartition]*refPartRead
	asm    *chunked.Assembler
	// reemitTruncated is, per table that re-emits, the LSN of the truncation whose rows were
	// given deleted versions last (truncate).
	reemitTruncated map[string]uint64
	// poison handles a record that does not decode (poison.go refPoison): nil to go on, or the
	// error that stops the stage.
	poison func(ctx context.Context, rec *kgo.Record, err error) error
}

// refPartRead is what the reader tracks of one reference topic partition to tell when compaction
// removed records before it read them. Kafka offsets of a partition the cdc stage writes (not
// transactionally) are consecutive until compaction drops superseded records, so a skipped
// offset means a record the reader never saw. Such a record was superseded by a later record of
// the same key that the broker's cleaner also had in its cleanable range, and that range holds
// at most one watermark (they share a key): every such superseding record comes before the second
// watermark after the skip. Versions read until then are flagged verGapHistory (their row may
// have lost older versions), and the first watermark after the skip does not advance the
// partition's watermark, so no snapshot looks such a row up before its flagged version is read.
type refPartRead struct {
	next  int64 // the offset expected next
	armed int   // watermarks still to read after the last skip
	// txnLSN and txnKeys are the commit LSN of the last change read and the row keys of the
	// changes of that transaction read so far (at most refTxnKeys): a TRUNCATE of the
	// transaction removes them, since its record comes after them on the partition.
	txnLSN   uint64
	txnKeys  []string
	overflow bool // the transaction had more than refTxnKeys changes on the partition
}

// refTxnKeys bounds the row keys the reader remembers of one transaction per partition.
const refTxnKeys = 65536

// refBatchRecords bounds the changes of one Pebble batch of the reader.
const refBatchRecords = 8192

// run consumes until ctx ends. It owns cl's polling, and prunes the store between polls.
func (r *refReader) run(ctx context.Context) error {
	for {
		fs := r.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var errs []error
		fs.EachError(func(topic string, p int32, err error) {
			errs = append(errs, fmt.Errorf("reference topic %s[%d]: %w", topic, p, err))
		})
		if len(errs) > 0 {
			r.log.Warn("fetching reference topics", zap.Error(errors.Join(errs...)))
		}
		rb, err := r.refs.newBatch()
		if err != nil {
			return err
		}
		r.asm.Fetches(fs) // reference rows above kafka.max_record_bytes arrive as chunk groups
		fs.EachRecord(func(rec *kgo.Record) {
			if err == nil {
				err = r.apply(ctx, rb, rec)
			}
			if err == nil && rb.records >= refBatchRecords { // bound the batch's memory
				if err = rb.apply(); err == nil {
					rb, err = r.refs.newBatch()
				}
			}
		})
		if err != nil {
			rb.close()
			return err
		}
		if err := rb.apply(); err != nil {
			return err
		}
		if err := r.refs.pruneIfDue(); err != nil {
			return err
		}
	}
}

func (r *refReader) part(tp topicPartition) *refPartRead {
	p := r.parts[tp]
	if p == nil {
		p = &refPartRead{}
		r.parts[tp] = p
	}
	return p
}

func (r *refReader) apply(ctx context.Context, rb *refBatch, rec *kgo.Record) error {
	tbl := r.tables[rec.Topic]
	pr := r.part(topicPartition{rec.Topic, rec.Partition})
	// A reassembled row spans its chunks' offsets; a dropped stray chunk leaves a gap, which
	// is flagged like one compaction left (conservatively).
	if chunked.FirstOffset(rec) != pr.next {
		r.log.Debug("reference topic offsets skipped (compaction): versions read until the second watermark are flagged",
			zap.String("topic", rec.Topic), zap.Int32("partition", rec.Partition), zap.Int64("expected", pr.next), zap.Int64("offset", rec.Offset))
		pr.armed = 2
	}
	pr.next = rec.Offset + 1
	if rec.Value == nil { // a tombstone of the compacted topic
		return rb.forget(tbl, string(rec.Key))
	}
	in, err := r.dec.decode(ctx, rec)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, avro.ErrRegistryUnavailable) {
			return fmt.Errorf("reference topic %s partition %d offset %d: %w", rec.Topic, rec.Partition, rec.Offset, err)
		}
		return r.poison(ctx, rec, err)
	}
	switch in.kind {
	case kindWatermark:
		if pr.armed > 0 {
			if pr.armed--; pr.armed > 0 {
				return nil // maybe the one watermark a cleaned range keeps: records after it may supersede skipped ones
			}
		}
		rb.mark(tbl.name, rec.Partition, in.watermark.CommitLSN)
	case kindTruncate:
		return r.truncate(rb, tbl, pr, rec, in.watermark)
	case kindChange:
		pr.noteChange(string(rec.Key), in.change.CommitLSN)
		return rb.change(tbl, string(rec.Key), in.change, rec.Timestamp, pr.armed > 0)
	}
	return nil
}

// noteChange remembers the row key of a change of the transaction committed at lsn.
func (pr *refPartRead) noteChange(key string, lsn uint64) {
	if lsn != pr.txnLSN {
		pr.txnLSN, pr.txnKeys, pr.overflow = lsn, pr.txnKeys[:0], false
	}
	if len(pr.txnKeys) < refTxnKeys {
		pr.txnKeys = append(pr.txnKeys, key)
	} else {
		pr.overflow = true
	}
}

// truncate applies a TRUNCATE of tbl: lookups at or after its LSN ignore the versions below it,
// and the rows its transaction wrote before it on this partition (same LSN, so the truncation
// alone would keep them) get a deleted version at that LSN, which a row the transaction writes
// after the TRUNCATE replaces (the last image of a transaction wins).
func (r *refReader) truncate(rb *refBatch, tbl *refTable, pr *refPartRead, rec *kgo.Record, wm avro.Watermark) error {
	if err := rb.truncate(tbl, wm.CommitLSN); err != nil {
		return err
	}
	if tbl.reemit && r.reemitTruncated[tbl.name] != wm.CommitLSN {
		// Once per truncation, on its first partition: a row written after the TRUNCATE (its
		// version at the same LSN) replaces the deleted version, read before or after.
		if r.reemitTruncated == nil {
			r.reemitTruncated = map[string]uint64{}
		}
		r.reemitTruncated[tbl.name] = wm.CommitLSN
		if err := rb.truncateRows(tbl, wm.CommitLSN, wm.Time, rec.Timestamp); err != nil {
			return fmt.Errorf("reference %s: TRUNCATE at %s: %w", tbl.name, lsnText(wm.CommitLSN), err)
		}
	}
	if pr.txnLSN != wm.CommitLSN {
		return nil
	}
	if pr.overflow {
		r.log.Warn("TRUNCATE of a reference table after more than 65536 changes of its transaction on one partition: rows of the transaction written before the TRUNCATE beyond those may still show",
			zap.String("table", tbl.name), zap.Int32("partition", rec.Partition), zap.String("lsn", lsnText(wm.CommitLSN)))
	}
	gone := &avro.Change{Op: avro.OpDelete, Table: tbl.name, CommitLSN: wm.CommitLSN, CommitTime: wm.Time}
	for _, key := range pr.txnKeys {
		if err := rb.change(tbl, key, gone, rec.Timestamp, pr.armed > 0); err != nil {
			return err
		}
	}
	pr.txnKeys = pr.txnKeys[:0]
	return nil
}
