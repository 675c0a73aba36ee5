package pipeline

import (
	"context"
	"encoding/binary"
	"fmt"
	"github.com/walhook/walhook/internal/chunked"
	"math"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// Pruning the reference store (doc.go "References as of the source transaction"). A version of a
// row is dropped once a newer version of the row superseded it and either
//
//   - the superseding version's LSN is at or below the group's horizon, the LSN below which no
//     partition of the group will build a snapshot or re-emit (groupHorizon), and it is older
//     than refPruneGrace; or
//   - the superseding version is older than bubbleup.reference_history: beyond the history bound,
//     where a snapshot that still needs the version counts as inexact instead.
//
// Ages are those of the reference records (their Kafka timestamps, set when the cdc stage wrote
// them), as the broker's min.compaction.lag.ms counts them.
//
// The prune queue ('P' keys) lists superseding versions in LSN order, so a pass reads only what
// it drops. The oldest version kept of a pruned row is flagged verGapHistory: a lookup below it
// is reported, never answered silently.

// refPruning is the reader goroutine's pruning state.
type refPruning struct {
	last time.Time
}

const (
	refPruneEvery = 5 * time.Second
	// refPruneBatch bounds the prune-queue entries of one pass, so the reader is not held up.
	refPruneBatch = 8192
	// refPruneGrace: a version is pruned by the horizon only once its successor is this old,
	// so a change record that reaches its change topic late (a producer retry after the reference
	// watermark was read) still finds the version it needs.
	refPruneGrace = time.Minute
	// refHorizonEvery is how often the group's horizon is computed.
	refHorizonEvery = 30 * time.Second
)

// pruneIfDue runs a prune pass every refPruneEvery. Called on the reader goroutine.
func (t *refTables) pruneIfDue() error {
	now := t.now()
	if now.Sub(t.pruning.last) < refPruneEvery {
		return nil
	}
	t.pruning.last = now
	_, err := t.prune(now, refPruneBatch)
	return err
}

// prune drops up to limit superseded versions that are due, and the change-log entries every
// partition has handled, and returns how many versions it dropped.
func (t *refTables) prune(now time.Time, limit int) (int64, error) {
	horizon, known := t.horizon()
	graceEdge := now.Add(-refPruneGrace).UnixMicro()
	oldest := int64(math.MinInt64)
	if t.history > 0 {
		oldest = now.Add(-t.history).UnixMicro()
	}
	due := func(lsn uint64, at int64, strict bool) bool {
		below := lsn <= horizon
		if strict {
			below = lsn < horizon
		}
		return (known && below && at < graceEdge) || at < oldest
	}
	b := t.db.NewBatch()
	defer b.Close()
	it, err := t.db.NewIter(&pebble.IterOptions{LowerBound: []byte{'P'}, UpperBound: []byte{'Q'}})
	if err != nil {
		return 0, fmt.Errorf("prune reference versions: %w", err)
	}
	var dropped, entries int64
	done := map[refKey]uint64{} // rows pruned in this pass: versions below this LSN are deleted in b already
	for valid := it.First(); valid && entries < int64(limit); valid = it.Next() {
		k := it.Key()
		if len(k) < 11 || len(it.Value()) != 8 {
			continue
		}
		lsn := binary.BigEndian.Uint64(k[1:9])
		if !due(lsn, int64(binary.BigEndian.Uint64(it.Value())), false) {
			break
		}
		row := refKey{binary.BigEndian.Uint16(k[9:11]), string(k[11:])}
		n, err := t.dropBelow(b, row, done[row], lsn)
		done[row] = lsn
		if err != nil {
			_ = it.Close()
			return 0, err
		}
		dropped += n
		entries++
		if err := b.Delete(k, nil); err != nil {
			_ = it.Close()
			return 0, err
		}
	}
	if err := it.Close(); err != nil {
		return 0, fmt.Errorf("prune reference versions: %w", err)
	}
	// The change log of re-emitting tables: an entry is done once every partition handled it.
	for _, tbl := range t.layout {
		if !tbl.reemit {
			continue
		}
		start := changeLSNKey(tbl.index, 0)
		it, err := t.db.NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: prefixEnd(start[:3])})
		if err != nil {
			return 0, fmt.Errorf("prune reference change log: %w", err)
		}
		for valid := it.First(); valid && entries < int64(limit); valid = it.Next() {
			k := it.Key()
			if len(k) < 11 || len(it.Value()) != 16 {
				continue
			}
			if !due(binary.BigEndian.Uint64(k[3:11]), int64(binary.BigEndian.Uint64(it.Value()[8:])), true) {
				break
			}
			entries++
			if err := b.Delete(k, nil); err != nil {
				_ = it.Close()
				return 0, err
			}
		}
		if err := it.Close(); err != nil {
			return 0, fmt.Errorf("prune reference change log: %w", err)
		}
	}
	if b.Empty() {
		return 0, nil
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return 0, fmt.Errorf("prune reference versions: %w", err)
	}
	t.mu.Lock()
	t.versions -= dropped
	t.mu.Unlock()
	if t.metrics != nil {
		t.metrics.refPruned.Add(float64(dropped))
	}
	return dropped, nil
}

// dropBelow deletes the versions of a row in [from, lsn) and flags the version at lsn
// verGapHistory.
func (t *refTables) dropBelow(b *pebble.Batch, row refKey, from, lsn uint64) (int64, error) {
	at := versionKey(row.table, row.key, lsn)
	it, err := t.db.NewIter(&pebble.IterOptions{LowerBound: versionKey(row.table, row.key, from), UpperBound: prefixEnd(at)})
	if err != nil {
		return 0, fmt.Errorf("prune reference versions: %w", err)
	}
	defer it.Close()
	var n int64
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		if versionLSN(k) == lsn {
			v := append([]byte(nil), it.Value()...)
			if len(v) > 0 {
				v[0] |= verGapHistory
			}
			if err := b.Set(k, v, nil); err != nil {
				return 0, err
			}
			continue
		}
		if err := b.Delete(k, nil); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// versionCount is the number of versions on disk, for the gauge.
func (t *refTables) versionCount() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.versions
}

// horizonTracker computes the group's horizon every refHorizonEvery (run) and hands it to the
// pruning (get). Owned by Run.
type horizonTracker struct {
	s       *Stage
	refs    *refTables
	value   atomic.Uint64 // 0: not known yet
	prevLow uint64        // the reference tables' low watermark at the previous computation
}

func (h *horizonTracker) get() (uint64, bool) {
	v := h.value.Load()
	return v, v > 0
}

func (h *horizonTracker) run(ctx context.Context) {
	tick := time.NewTicker(refHorizonEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		low := h.refs.low(h.refs.tableNames())
		v, err := h.s.groupHorizon(ctx, h.prevLow)
		h.prevLow = low
		if err != nil {
			if ctx.Err() == nil {
				h.s.log.Debug("reference store: group horizon unknown this time; versions are pruned by age only", zap.Error(err))
			}
			continue
		}
		h.value.Store(v)
	}
}

func (t *refTables) tableNames() []string {
	out := make([]string, 0, len(t.layout))
	for name := range t.layout {
		out = append(out, name)
	}
	return out
}

// groupHorizon is the LSN below which no partition of the group's change topics will build a
// snapshot or re-emit, from the group's committed offsets: for a partition with records left to
// process, the LSN of the first one (snapshots come at or above it); for a root whose references
// re-emit, the LSN of the last record processed (its changes below that are handled, the
// partition's handled mark being kept with its offsets); for a partition consumed to its end,
// prevLow, the reference watermark of a computation ago (a record below it has reached its topic
// by now). A partition with no record constrains nothing.
func (s *Stage) groupHorizon(ctx context.Context, prevLow uint64) (uint64, error) {
	adm := kadm.NewClient(s.admin)
	topics := make([]string, 0, len(s.roots))
	reemits := map[string]bool{}
	for _, rm := range s.roots {
		topics = append(topics, rm.changeTopic)
		reemits[rm.changeTopic] = len(reemitTables(rm)) > 0
	}
	committed, err := adm.FetchOffsets(ctx, s.groupID)
	if err != nil {
		return 0, fmt.Errorf("committed offsets of group %s: %w", s.groupID, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return 0, fmt.Errorf("start offsets of %v: %w", topics, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return 0, fmt.Errorf("end offsets of %v: %w", topics, err)
	}
	horizon := uint64(math.MaxUint64)
	want := map[string]map[int32]kgo.Offset{}
	var firstErr error
	ends.Each(func(e kadm.ListedOffset) {
		if e.Err != nil {
			firstErr = e.Err
			return
		}
		start := int64(0)
		if so, ok := starts.Lookup(e.Topic, e.Partition); ok && so.Err == nil {
			start = so.Offset
		}
		at := start
		if c, ok := committed.Lookup(e.Topic, e.Partition); ok && c.Err == nil && c.At > at {
			at = c.At
		}
		read := int64(-1)
		switch {
		case e.Offset <= start: // no record
		case reemits[e.Topic] && at == start:
			horizon = 0 // nothing processed: its re-emissions may go back to the start
		case reemits[e.Topic]:
			read = at - 1
		case at >= e.Offset:
			horizon = min(horizon, prevLow)
		default:
			read = at
		}
		if read >= 0 {
			if want[e.Topic] == nil {
				want[e.Topic] = map[int32]kgo.Offset{}
			}
			want[e.Topic][e.Partition] = kgo.NewOffset().At(read)
		}
	})
	if firstErr != nil {
		return 0, firstErr
	}
	if len(want) > 0 {
		lsns, err := s.recordLSNs(ctx, want)
		if err != nil {
			return 0, err
		}
		for _, l := range lsns {
			horizon = min(horizon, l)
		}
	}
	if horizon == math.MaxUint64 {
		horizon = prevLow
	}
	return horizon, nil
}

// recordLSNs reads the first record at or after each offset and returns its commit LSN.
func (s *Stage) recordLSNs(ctx context.Context, at map[string]map[int32]kgo.Offset) ([]uint64, error) {
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), s.connOpts...), kgo.ConsumePartitions(at))...)
	if err != nil {
		return nil, fmt.Errorf("horizon client: %w", err)
	}
	defer cl.Close()
	pending := 0
	for _, ps := range at {
		pending += len(ps)
	}
	seen := map[topicPartition]bool{}
	var out []uint64
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for len(seen) < pending {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("read the change records at the group's offsets: %w", ctx.Err())
		}
		var perr error
		fs.EachRecord(func(r *kgo.Record) {
			tp := topicPartition{r.Topic, r.Partition}
			if seen[tp] {
				return
			}
			lsn, ok := parseLSN(header(r, headerLSN))
			if !ok && chunked.IsChunk(r) {
				return // the group's last chunk carries the headers of the record
			}
			seen[tp] = true
			if !ok {
				perr = fmt.Errorf("record %s[%d]@%d has no %s header", r.Topic, r.Partition, r.Offset, headerLSN)
				return
			}
			out = append(out, lsn)
		})
		if perr != nil {
			return nil, perr
		}
	}
	return out, nil
}
