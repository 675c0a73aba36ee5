package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/walhook/walhook/avro"
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
	overlay map[string]*rootState // roots changed in the open Kafka transaction
	encoded map[string][]byte     // their encoded state, written to Pebble on commit
	roots   int64                 // roots in the partition's state
}

func (s *Stage) startWorker(rm *rootModel, partition int32) *partWorker {
	w := &partWorker{
		s: s, rm: rm, partition: partition, dec: newDecoder(s.reg),
		log:  s.log.With(zap.String("root", rm.cfg.Table), zap.Int32("partition", partition)),
		work: make(chan func()), done: make(chan struct{}),
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

// stop ends the worker goroutine and waits for it. The overlay is dropped.
func (w *partWorker) stop() {
	close(w.work)
	<-w.done
	w.s.metrics.stateRoots.Sub(float64(w.roots))
}

// batchResult is what applying one fetch batch of a partition gives the stage loop.
type batchResult struct {
	out   []*kgo.Record
	snaps map[string]int // snapshots by event type, counted once the transaction commits
	err   error
}

// process applies records (in offset order) to the overlay and returns the snapshot and changelog
// records to produce in the open Kafka transaction. Nothing reaches Pebble until commit.
func (w *partWorker) process(ctx context.Context, recs []*kgo.Record) batchResult {
	if w.overlay == nil {
		w.overlay, w.encoded = map[string]*rootState{}, map[string][]byte{}
	}
	var out []*kgo.Record
	snaps := map[string]int{}
	for _, rec := range recs {
		snap, err := w.apply(ctx, rec)
		if err != nil {
			return batchResult{err: fmt.Errorf("root %s partition %d offset %d key %q: %w", w.rm.cfg.Table, w.partition, rec.Offset, rec.Key, err)}
		}
		if snap != nil {
			out = append(out, snap)
			snaps[header(snap, headerEventType)]++
		}
	}
	for key, st := range w.overlay {
		b, err := encodeState(st)
		if err != nil {
			return batchResult{err: fmt.Errorf("root %s key %q: encode state: %w", w.rm.cfg.Table, key, err)}
		}
		w.encoded[key] = b
		out = append(out, &kgo.Record{Topic: w.s.changelog, Partition: w.partition, Key: changelogKey(w.rm.cfg.EventPrefix, key), Value: b})
	}
	return batchResult{out: out, snaps: snaps}
}

func (w *partWorker) apply(ctx context.Context, rec *kgo.Record) (*kgo.Record, error) {
	in, err := w.dec.decode(ctx, rec)
	if err != nil {
		return nil, err
	}
	key := string(rec.Key)
	switch in.kind {
	case kindChange:
		st, err := w.state(key)
		if err != nil {
			return nil, err
		}
		if _, err := applyChange(w.rm, key, st, in.change, w.s.cfg.BubbleUp.EmitReads); err != nil {
			return nil, err
		}
		return nil, nil
	case kindTxnEnd:
		return w.finish(ctx, key, in.txnEnd, in.snapEnd)
	}
	return nil, nil // watermarks on a change topic carry nothing for bubble-up
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
			zap.String("key", key), zap.String("lsn", lsnText(end.CommitLSN)))
	}
	if !o.emit {
		return nil, nil
	}
	if err := w.s.refs.wait(ctx, w.refTables(), end.CommitLSN); err != nil {
		return nil, fmt.Errorf("snapshot v%d at LSN %s: %w", st.Version, lsnText(end.CommitLSN), err)
	}
	bare := payloadBuilder{rm: w.rm, refs: w.s.refs.get}.build(key, st)
	payload := bare
	if w.rm.cfg.SnapshotForm == "old_new" {
		payload = oldNew(st.Last, bare)
		st.Last = bare
	}
	snap := avro.Snapshot{
		RootType: w.rm.cfg.Table, EventPrefix: w.rm.cfg.EventPrefix, Key: key,
		Tenant: keyText(st.Root.mustGet(w.rm.cfg.TenantColumn)), EventType: w.rm.eventType(o.verb),
		Verb: o.verb, Version: st.Version, CommitLSN: end.CommitLSN, CommitTime: end.CommitTime, Payload: payload,
	}
	if snap.Tenant == "null" {
		snap.Tenant = ""
	}
	return w.s.snapshotRecord(ctx, w.rm, snap)
}

func (w *partWorker) refTables() []string {
	out := make([]string, len(w.rm.refs))
	for i, r := range w.rm.refs {
		out[i] = r.Table
	}
	return out
}

// state returns the root's state for the open transaction: the overlay's, else Pebble's, else a
// new one. It is added to the overlay.
func (w *partWorker) state(key string) (*rootState, error) {
	if st, ok := w.overlay[key]; ok {
		return st, nil
	}
	st := &rootState{}
	v, closer, err := w.s.db.Get(stateKey(w.rm.index, w.partition, key))
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("read state: %w", err)
	default:
		st, err = decodeState(v)
		closer.Close()
		if err != nil {
			return nil, err
		}
	}
	w.overlay[key] = st
	return st, nil
}

// commit makes the overlay durable locally after the Kafka transaction committed.
func (w *partWorker) commit() error {
	if len(w.encoded) == 0 {
		w.overlay, w.encoded = nil, nil
		return nil
	}
	b := w.s.db.NewBatch()
	defer b.Close()
	var added int64
	for key, v := range w.encoded {
		k := stateKey(w.rm.index, w.partition, key)
		if _, closer, err := w.s.db.Get(k); err == nil {
			closer.Close()
		} else {
			added++
		}
		if err := b.Set(k, v, nil); err != nil {
			return err
		}
	}
	w.overlay, w.encoded = nil, nil
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("root %s partition %d: write state: %w", w.rm.cfg.Table, w.partition, err)
	}
	w.roots += added
	w.s.metrics.stateRoots.Add(float64(added))
	return nil
}

// abort drops the overlay: the Kafka transaction did not commit, and its input will be consumed
// again from the committed offsets.
func (w *partWorker) abort() { w.overlay, w.encoded = nil, nil }

// snapshotRecord frames snap for the root's snapshot topic.
func (s *Stage) snapshotRecord(ctx context.Context, rm *rootModel, snap avro.Snapshot) (*kgo.Record, error) {
	prefix, err := s.reg.Prefix(ctx, rm.snapshotTopic, s.snapSchema)
	if err != nil {
		return nil, fmt.Errorf("register snapshot schema for %s: %w", rm.snapshotTopic, err)
	}
	value := avro.AppendSnapshot(append(make([]byte, 0, len(prefix)+len(snap.Payload)+128), prefix...), snap)
	return &kgo.Record{
		Topic: rm.snapshotTopic, Key: []byte(snap.Key), Value: value, Timestamp: time.Now(),
		Headers: []kgo.RecordHeader{
			{Key: headerEventType, Value: []byte(snap.EventType)},
			{Key: headerVersion, Value: []byte(strconv.FormatInt(snap.Version, 10))},
			{Key: headerTenant, Value: []byte(snap.Tenant)},
		},
	}, nil
}
