package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/walhook/walhook/internal/chunked"
	"github.com/walhook/walhook/internal/kafkaconn"
)

// restoreBatchBytes is how much state one Pebble batch of a restore holds before it is committed.
const restoreBatchBytes = 16 << 20

// restore rebuilds the worker's Pebble range from the changelog partition: it drops the range,
// then reads the partition from its start to its last stable offset (read_committed, so only
// state of committed transactions) and writes the entries of this root type in large batches.
// It runs on the worker goroutine before the partition's first batch.
func (w *partWorker) restore(ctx context.Context) error {
	start := time.Now()
	prefix := statePrefix(w.rm.index, w.partition)
	if err := w.s.db.DeleteRange(prefix, prefixEnd(prefix), pebble.NoSync); err != nil {
		return fmt.Errorf("root %s partition %d: drop local state: %w", w.rm.cfg.Table, w.partition, err)
	}
	end, err := w.changelogEnd(ctx)
	if err != nil {
		return err
	}
	if end > 0 {
		if _, err = w.readChangelog(ctx, prefix, end); err != nil {
			return err
		}
	}
	if err := w.restoreReemit(); err != nil {
		return err
	}
	n, err := w.countRoots(prefix)
	if err != nil {
		return err
	}
	w.roots = n
	w.s.metrics.stateRoots.Add(float64(n))
	took := time.Since(start)
	w.s.metrics.restoreSeconds.Observe(took.Seconds())
	w.s.metrics.restoredRoots.Add(float64(n))
	w.log.Info("restored state from changelog", zap.Int64("roots", n), zap.Int64("changelog_end", end), zap.Duration("took", took))
	return nil
}

// changelogEnd is the end of the changelog partition once nothing in it is undecided: its last
// stable offset, waited for until it equals the high watermark. A previous owner killed inside a
// transaction leaves that transaction open (until its transaction id is reused or the broker
// aborts it at the transaction timeout), and a later owner's transactions commit above it: a
// restore up to the last stable offset alone would miss those committed records and rebuild
// stale state, repeating versions. Nobody else writes the partition while this worker owns it,
// so the wait ends when the open transaction does.
func (w *partWorker) changelogEnd(ctx context.Context) (int64, error) {
	adm := kadm.NewClient(w.s.admin)
	// lookup returns the offset of the changelog partition; transient errors (a broker down or
	// failing over) are retried by the loop below, a missing partition is not.
	lookup := func(what string, offs kadm.ListedOffsets, err error) (offset int64, transient bool, _ error) {
		if err != nil {
			return 0, true, fmt.Errorf("root %s partition %d: list %s of changelog %s: %w", w.rm.cfg.Table, w.partition, what, w.s.changelog, err)
		}
		o, ok := offs.Lookup(w.s.changelog, w.partition)
		if !ok {
			return 0, false, fmt.Errorf("root %s: changelog %s has no partition %d: it needs as many partitions as the change topic %s",
				w.rm.cfg.Table, w.s.changelog, w.partition, w.rm.changeTopic)
		}
		if o.Err != nil {
			return 0, true, fmt.Errorf("root %s partition %d: %s of changelog %s: %w", w.rm.cfg.Table, w.partition, what, w.s.changelog, o.Err)
		}
		return o.Offset, false, nil
	}
	waitStart := time.Now()
	logged := false
	wait := 100 * time.Millisecond
	var lastWarn time.Time
	for {
		offs, err := adm.ListCommittedOffsets(ctx, w.s.changelog)
		stable, transient, err := lookup("last stable offset", offs, err)
		var high int64
		if err == nil {
			offs, err = adm.ListEndOffsets(ctx, w.s.changelog)
			high, transient, err = lookup("high watermark", offs, err)
		}
		switch {
		case err != nil && !transient:
			return 0, err
		case err != nil:
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			if time.Since(lastWarn) >= 10*time.Second {
				lastWarn = time.Now()
				w.log.Warn("restore cannot read the changelog's offsets yet; retrying", zap.Error(err))
			}
			wait = min(2*wait, 2*time.Second)
		case stable >= high:
			if logged {
				w.log.Info("changelog transaction of a previous owner ended; restoring",
					zap.Int64("changelog_end", high), zap.Duration("waited", time.Since(waitStart)))
			}
			return stable, nil
		default:
			wait = 100 * time.Millisecond
			if !logged {
				logged = true
				w.log.Info("waiting for an open changelog transaction of a previous owner before restoring "+
					"(it ends when that owner's transactional id is reused or at bubbleup.transaction_timeout)",
					zap.Int64("last_stable_offset", stable), zap.Int64("high_watermark", high))
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(wait):
		}
	}
}

func (w *partWorker) readChangelog(ctx context.Context, prefix []byte, end int64) (int64, error) {
	opts := append(append([]kgo.Opt(nil), w.s.connOpts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{w.s.changelog: {w.partition: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // control records let the read tell when it reached end
		kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(32<<20),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return 0, fmt.Errorf("restore client: %w", err)
	}
	defer cl.Close()
	want := changelogKey(w.rm.cfg.EventPrefix, "")
	b := w.s.db.NewBatch()
	defer func() { b.Close() }()
	var n int64
	// A state above kafka.max_record_bytes is a chunk group. The topic is compacted: a key's
	// chunks of an older state may be left (compaction removed their last chunk, or a later
	// state had fewer chunks); they are dropped. A state whose chunks cannot be reassembled is
	// an error only if no later record of its key replaced it.
	asm := chunked.NewAssembler(false)
	corrupt := map[string]error{}
	for next := int64(0); next < end; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = errors.Join(ferr, err) })
		if ferr != nil { // a new session retries the restore (kafkaconn.RunSessions)
			return 0, &kafkaconn.SessionError{Err: fmt.Errorf("root %s partition %d: read changelog %s: %w", w.rm.cfg.Table, w.partition, w.s.changelog, ferr)}
		}
		var recs []*kgo.Record
		for _, rec := range fs.Records() {
			next = max(next, rec.Offset+1)
			if rec.Offset < end && !rec.Attrs.IsControl() {
				recs = append(recs, rec)
			}
		}
		for _, rec := range asm.Records(w.s.changelog, w.partition, recs) {
			if !bytes.HasPrefix(rec.Key, want) {
				continue
			}
			if err := chunked.Err(rec); err != nil {
				corrupt[string(rec.Key)] = err
				continue
			}
			delete(corrupt, string(rec.Key))
			k := append(append([]byte(nil), prefix...), rec.Key[len(want):]...)
			if rec.Value == nil {
				err = b.Delete(k, nil)
			} else {
				err = b.Set(k, rec.Value, nil)
				n++
			}
			if err != nil {
				return 0, err
			}
		}
		if b.Len() >= restoreBatchBytes {
			if err := b.Commit(pebble.NoSync); err != nil {
				return 0, fmt.Errorf("root %s partition %d: write restored state: %w", w.rm.cfg.Table, w.partition, err)
			}
			b.Close()
			b = w.s.db.NewBatch()
		}
	}
	for key, err := range corrupt {
		return 0, fmt.Errorf("root %s partition %d: the state of key %q in changelog %s cannot be restored: %w",
			w.rm.cfg.Table, w.partition, key, w.s.changelog, err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return 0, fmt.Errorf("root %s partition %d: write restored state: %w", w.rm.cfg.Table, w.partition, err)
	}
	return n, nil
}

// countRoots counts the keys of the worker's range.
func (w *partWorker) countRoots(prefix []byte) (int64, error) {
	it, err := w.s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return 0, err
	}
	var n int64
	for valid := it.First(); valid; valid = it.Next() {
		n++
	}
	return n, it.Close()
}
