package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/chunked"
	"github.com/walhook/walhook/internal/deadletter"
)

// partWorker owns the state of one input partition (one root type, one change-topic partition):
// its Pebble key range and the overlay of roots changed by the open Kafka transaction. Only its
// goroutine touches them; the stage loop sends it work through do.
type partWorker struct {
	s         *Stage
	rm        *rootModel
	partition int32
	dec       *decoder
	log       *zap.Logger

	work chan func()   // closures run on the worker goroutine
	done chan struct{} // closed when the goroutine returned

	// Owned by the worker goroutine.
	overlay  map[string]*rootState // roots changed in the open Kafka transaction
	encoded  map[string][]byte     // their encoded state, written to Pebble on commit
	added    int64                 // roots of the overlay that Pebble does not hold yet
	roots    int64                 // roots in the partition's state
	writeErr error                 // a failed Pebble write after a Kafka commit: the state is stale
	re       *reemitWorker         // nil when no reference of the root re-emits (reemit.go)
	extra    []*kgo.Record         // records of the open batch besides snapshots and state (inexact.go)
	// cache holds the committed state of recently changed roots, decoded, so that a hot root is
	// not read and decoded from Pebble again; at most stateCacheRoots entries. An entry is never
	// changed: a transaction works on a clone in the overlay, and a commit replaces the entry.
	cache map[string]*rootState
}

// stateCacheRoots bounds a partition worker's cache of decoded root states.
const stateCacheRoots = 1024

func (s *Stage) startWorker(rm *rootModel, partition int32) *partWorker {
	w := &partWorker{
		s: s, rm: rm, partition: partition, dec: newDecoder(s.reg),
		log:  s.log.With(zap.String("root", rm.cfg.Table), zap.Int32("partition", partition)),
		work: make(chan func()), done: make(chan struct{}), cache: map[string]*rootState{},
	}
	go func() {
		defer close(w.done)
		for fn := range w.work {
			fn()
		}
	}()
	return w
}

// do runs fn on the worker goroutine and waits for it.
func (w *partWorker) do(fn func()) {
	ran := make(chan struct{})
	w.work <- func() { fn(); close(ran) }
	<-ran
}

// post queues fn to run on the worker goroutine after the work already queued, without waiting
// for it.
func (w *partWorker) post(fn func(*partWorker)) { w.work <- func() { fn(w) } }

// stop ends the worker goroutine after the work queued and waits for it. The overlay is dropped.
func (w *partWorker) stop() {
	close(w.work)
	<-w.done // the goroutine's last write happens before this receive
	w.s.metrics.stateRoots.Sub(float64(w.roots))
	if w.writeErr != nil {
		w.log.Warn("local state write failed; the partition restores from the changelog on its next assignment", zap.Error(w.writeErr))
	}
}

// batchResult is what applying one fetch batch of a partition gives the stage loop.
type batchResult struct {
	out      []*kgo.Record
	snaps    map[string]int // snapshots by event type, counted once the transaction commits
	poisoned []poisoned     // records dead-lettered, counted once the transaction commits
	err      error
}

// poisoned is one dead-lettered record of a batch, for the poison metric.
type poisoned struct{ topic, cause string }

// poisonError marks an error of the record itself (it does not decode, or cannot be applied):
// the record is dead-lettered or, with bubbleup.on_poison: stop, stops the stage.
type poisonError struct{ err error }

func (e *poisonError) Error() string { return e.err.Error() }
func (e *poisonError) Unwrap() error { return e.err }

// process applies records (in offset order) to the overlay and returns the snapshot and changelog
// records to produce in the open Kafka transaction. Nothing reaches Pebble until commit.
func (w *partWorker) process(ctx context.Context, recs []*kgo.Record) batchResult {
	if w.writeErr != nil {
		// The last committed transaction is in Kafka but not in Pebble: applying more on top
		// would build versions from stale state. Fail; a restart restores from the changelog.
		return batchResult{err: w.writeErr}
	}
	w.extra = nil // a failed batch's, aborted with it
	if w.overlay == nil {
		w.overlay, w.encoded = map[string]*rootState{}, map[string][]byte{}
	}
	var out []*kgo.Record
	var dead []poisoned
	snaps := map[string]int{}
	for _, rec := range recs {
		var err error
		if out, err = w.reemitBefore(ctx, rec, out, snaps); err != nil {
			return batchResult{err: fmt.Errorf("root %s partition %d offset %d: re-emit on reference change: %w", w.rm.cfg.Table, w.partition, rec.Offset, err)}
		}
		if reason, ok := w.s.retry.Refused(rec); ok {
			// What this record produced was refused for good (deadletter.Retry): it is
			// dead-lettered instead of applied.
			out = append(out, w.s.deadLetter(rec, reason))
			dead = append(dead, poisoned{rec.Topic, deadletter.CauseProduce})
			continue
		}
		n := len(out)
		out, err = w.apply(ctx, rec, out)
		var pe *poisonError
		if errors.As(err, &pe) {
			if w.s.cfg.BubbleUp.OnPoison == config.PoisonStop {
				return batchResult{err: &deadletter.StopError{Stage: config.StageBubbleUp,
					Record: deadletter.Position{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}, Reason: pe.err}}
			}
			w.log.Warn("undecodable record copied to the poison topic; continuing with the next record",
				zap.String("topic", rec.Topic), zap.Int64("offset", rec.Offset), zap.String("poison_topic", w.s.poisonTopic), zap.Error(pe.err))
			out = append(out[:n], w.s.deadLetter(rec, pe.err)) // nothing of the record is applied
			dead = append(dead, poisoned{rec.Topic, deadletter.CauseDecode})
			continue
		}
		if err != nil {
			return batchResult{err: fmt.Errorf("root %s partition %d offset %d key %q: %w", w.rm.cfg.Table, w.partition, rec.Offset, rec.Key, err)}
		}
		if chunked.Reassembled(rec) {
			// Applied: the state has the value now, and the snapshot soon. Holding the record's
			// (large) value until the transaction ends would keep a third copy of it; an aborted
			// transaction reads the record again from Kafka.
			rec.Value = nil
		}
		for _, snap := range out[n:] {
			snaps[header(snap, headerEventType)]++
		}
	}
	out, err := w.reemit(ctx, out, snaps)
	if err != nil {
		return batchResult{err: fmt.Errorf("root %s partition %d: re-emit on reference change: %w", w.rm.cfg.Table, w.partition, err)}
	}
	out = append(out, w.extra...)
	w.extra = nil
	for key, st := range w.overlay {
		b, err := encodeState(st)
		if err != nil {
			return batchResult{err: fmt.Errorf("root %s key %q: encode state: %w", w.rm.cfg.Table, key, err)}
		}
		w.encoded[key] = b
		out = append(out, &kgo.Record{Topic: w.s.changelog, Partition: w.partition, Key: changelogKey(w.rm.cfg.EventPrefix, key), Value: b})
	}
	return batchResult{out: out, snaps: snaps, poisoned: dead}
}

// apply applies one record to the overlay and appends the snapshots it emits to out.
func (w *partWorker) apply(ctx context.Context, rec *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
	in, err := w.dec.decode(ctx, rec)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, avro.ErrRegistryUnavailable) {
			return out, err // stopping, or the registry did not answer: the record may be fine
		}
		return out, &poisonError{err}
	}
	key := string(rec.Key)
	switch in.kind {
	case kindChange:
		st, err := w.state(key)
		if err != nil {
			return out, err
		}
		if _, err := applyChange(w.rm, key, st, in.change, w.s.cfg.BubbleUp.EmitReads); err != nil {
			return out, &poisonError{err}
		}
	case kindTxnEnd:
		snap, err := w.finish(ctx, key, in.txnEnd, in.snapEnd)
		if snap != nil {
			w.emitted(ctx, rec, snap) // trace.go
			out = append(out, snap)
		}
		return out, err
	case kindTruncate:
		return out, w.truncate(header(rec, headerTable), in.watermark.CommitLSN)
	case kindTruncateEnd:
		return w.finishTruncate(ctx, rec, in.txnEnd, out)
	}
	// Watermarks on a change topic carry nothing for bubble-up.
	return out, nil
}

func (w *partWorker) finish(ctx context.Context, key string, end avro.TxnEnd, snapEnd bool) (*kgo.Record, error) {
	st, err := w.state(key)
	if err != nil {
		return nil, err
	}
	if snapEnd {
		// The initial snapshot read the root and all its subordinates in one chunk ending
		// here: the state is complete (docs/cdc.md "Initial snapshot").
		st.Partial = false
	}
	o := finishTxn(w.rm, st, end)
	if o.orphan {
		w.s.metrics.orphans.Inc()
		w.log.Debug("change of a root not read yet (or without a root row): state updated, no snapshot",
			zap.String("root_key", key), zap.Int64("version", st.Version), zap.String("lsn", lsnText(end.CommitLSN)))
	}
	if !o.emit {
		return nil, nil
	}
	if err := w.s.refs.wait(ctx, w.refTables(), end.CommitLSN); err != nil {
		return nil, fmt.Errorf("snapshot v%d at LSN %s: %w", st.Version, lsnText(end.CommitLSN), err)
	}
	return w.emit(ctx, key, st, o.verb, end.CommitLSN, end.CommitTime)
}

// emit builds the snapshot record of st, whose version is already set, for the source
// transaction committed at lsn. Every reference is projected as of lsn (refstore.go asOf); one
// the store cannot project exactly is reported (inexact.go).
func (w *partWorker) emit(ctx context.Context, key string, st *rootState, verb avro.Verb, lsn uint64, at time.Time) (*kgo.Record, error) {
	var lookupErr error
	var inexact []inexactRef
	refs := func(j int, refKey string) []json.RawMessage {
		ref := w.rm.refs[j]
		r, err := w.s.refs.asOf(ref.Table, refKey, lsn)
		if err != nil {
			lookupErr = err
			return nil
		}
		if !r.exact {
			inexact = append(inexact, inexactRef{ref: ref, key: refKey, res: r})
		}
		return r.v.project(w.rm.refCols[j])
	}
	pb := payloadBuilder{rm: w.rm, refs: refs}
	pl := pb.plan(st)
	if lookupErr != nil {
		return nil, fmt.Errorf("snapshot v%d at LSN %s: %w", st.Version, lsnText(lsn), lookupErr)
	}
	for _, x := range inexact {
		if err := w.reportInexact(key, st.Version, lsn, x); err != nil {
			return nil, err
		}
	}
	snap := avro.Snapshot{
		RootType: w.rm.cfg.Table, EventPrefix: w.rm.cfg.EventPrefix, Key: key,
		Tenant: keyText(st.Root.mustGet(w.rm.cfg.TenantColumn)), EventType: w.rm.eventType(verb),
		Verb: verb, Version: st.Version, CommitLSN: lsn, CommitTime: at,
	}
	if snap.Tenant == "null" {
		snap.Tenant = ""
	}
	if w.rm.cfg.SnapshotForm == "old_new" {
		bare := pb.appendTo(make([]byte, 0, pl.bound), key, st, pl)
		snap.Payload = oldNew(st.Last, bare)
		st.Last = bare
		return w.s.snapshotRecord(ctx, w.rm, snap)
	}
	// The bare payload is written straight into the record value: one copy of it.
	prefix, err := w.s.reg.Prefix(ctx, w.rm.snapshotTopic, w.s.snapSchema)
	if err != nil {
		return nil, fmt.Errorf("register snapshot schema for %s: %w", w.rm.snapshotTopic, err)
	}
	return snapshotRecordOf(w.rm, snap, pb.snapshotValue(prefix, snap, key, st, pl)), nil
}

func (w *partWorker) refTables() []string {
	out := make([]string, len(w.rm.refs))
	for i, r := range w.rm.refs {
		out[i] = r.Table
	}
	return out
}

// state returns the root's state for the open transaction: the overlay's, else a copy of the
// committed one (committedState). It is added to the overlay.
func (w *partWorker) state(key string) (*rootState, error) {
	if st, ok := w.overlay[key]; ok {
		return st, nil
	}
	st, err := w.committedState(key)
	if err != nil {
		return nil, err
	}
	w.overlay[key] = st
	w.noteRefs(key, st)
	return st, nil
}

// committedState returns a copy of the root's committed state that the open transaction may
// change: from the cache, else Pebble, else a new one.
func (w *partWorker) committedState(key string) (*rootState, error) {
	if st, ok := w.cache[key]; ok {
		return st.clone(), nil
	}
	v, closer, err := w.s.db.Get(stateKey(w.rm.index, w.partition, key))
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		w.added++
		return &rootState{}, nil
	case err != nil:
		return nil, fmt.Errorf("read state: %w", err)
	}
	defer closer.Close()
	return decodeState(v)
}

// commit writes the overlay to Pebble after the Kafka transaction committed. It runs posted
// (the loop does not wait); a failure is kept in writeErr and fails the worker's next batch.
func (w *partWorker) commit() {
	if err := w.commitReemit(); err != nil && w.writeErr == nil {
		w.writeErr = err
	}
	overlay, encoded, added := w.overlay, w.encoded, w.added
	w.overlay, w.encoded, w.added = nil, nil, 0
	if len(encoded) == 0 || w.writeErr != nil {
		return
	}
	b := w.s.db.NewBatch()
	defer b.Close()
	for key, v := range encoded {
		if err := b.Set(stateKey(w.rm.index, w.partition, key), v, nil); err != nil {
			w.writeErr = fmt.Errorf("root %s partition %d: write state: %w", w.rm.cfg.Table, w.partition, err)
			return
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		w.writeErr = fmt.Errorf("root %s partition %d: write state: %w", w.rm.cfg.Table, w.partition, err)
		return
	}
	w.roots += added
	w.s.metrics.stateRoots.Add(float64(added))
	for key, st := range overlay {
		if _, ok := w.cache[key]; !ok && len(w.cache) >= stateCacheRoots {
			for old := range w.cache { // evict one entry, whichever the map yields first
				delete(w.cache, old)
				break
			}
		}
		w.cache[key] = st
	}
}

// abort drops the overlay: the Kafka transaction did not commit, and its input will be consumed
// again from the committed offsets.
func (w *partWorker) abort() {
	w.overlay, w.encoded, w.added = nil, nil, 0
	w.abortReemit()
}

// snapshotRecord frames snap for the root's snapshot topic.
func (s *Stage) snapshotRecord(ctx context.Context, rm *rootModel, snap avro.Snapshot) (*kgo.Record, error) {
	prefix, err := s.reg.Prefix(ctx, rm.snapshotTopic, s.snapSchema)
	if err != nil {
		return nil, fmt.Errorf("register snapshot schema for %s: %w", rm.snapshotTopic, err)
	}
	value := avro.AppendSnapshot(append(make([]byte, 0, len(prefix)+len(snap.Payload)+128), prefix...), snap)
	return snapshotRecordOf(rm, snap, value), nil
}

// snapshotRecordOf is the snapshot record of snap with its framed value.
func snapshotRecordOf(rm *rootModel, snap avro.Snapshot, value []byte) *kgo.Record {
	return &kgo.Record{
		Topic: rm.snapshotTopic, Key: []byte(snap.Key), Value: value, Timestamp: time.Now(),
		Headers: []kgo.RecordHeader{
			{Key: headerEventType, Value: []byte(snap.EventType)},
			{Key: headerVersion, Value: []byte(strconv.FormatInt(snap.Version, 10))},
			{Key: headerTenant, Value: []byte(snap.Tenant)},
		},
	}
}
