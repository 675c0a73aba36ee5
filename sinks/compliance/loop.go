package compliance

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/chunked"
	"github.com/walhook/walhook/internal/deadletter"
	"github.com/walhook/walhook/internal/kafkaconn"
)

// Header names of compliance records, as the snapshot records carry them.
const (
	headerEventType = "walhook-event-type"
	headerVersion   = "walhook-version"
	headerTenant    = "walhook-tenant"
)

// loop consumes snapshot records and writes each to both compliance topics of its root, records
// and consumer offsets in one Kafka transaction per poll.
func (s *Sink) loop(ctx context.Context, cat catalog, fr framer) error {
	sess, err := s.newSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	// Initialising the producer first fences this transactional id's previous incarnation (a
	// failed session of this process, a static member's killed predecessor) and ends its open
	// transaction at once instead of at the broker's transaction timeout.
	if _, _, err := sess.Client().ProducerID(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return &kafkaconn.SessionError{Err: fmt.Errorf("compliance: initialise transactional producer %s: %w", s.transactionalID, err)}
	}
	dec := &snapshotDecoder{reg: s.reg, known: map[string]bool{}}
	// Snapshots above kafka.max_record_bytes are chunk groups: the loop polls until none is
	// unfinished before the transaction, which commits every polled offset.
	asm := chunked.NewAssembler(true)
	for {
		fetches := s.forgetRevoked(asm).Fetches(sess.PollRecords(ctx, s.retry.PollMax(s.maxPoll)))
		for asm.Pending() && ctx.Err() == nil && !fetches.IsClientClosed() {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			more := sess.PollRecords(pctx, s.maxPoll)
			cancel()
			if more.NumRecords() > 0 || more.IsClientClosed() {
				fetches = append(fetches, s.forgetRevoked(asm).Fetches(more)...)
			}
			// A group nothing finishes becomes a record that does not decode (chunked.ErrCorrupt).
			fetches = append(fetches, asm.Abandon(chunked.IdleTimeout)...)
		}
		if ctx.Err() != nil {
			return nil
		}
		if fetches.IsClientClosed() {
			return errors.New("compliance: kafka client closed")
		}
		var fetchErr error
		fetches.EachError(func(t string, p int32, err error) {
			fetchErr = errors.Join(fetchErr, fmt.Errorf("fetch %s[%d]: %w", t, p, err))
		})
		if fetchErr != nil {
			s.log.Warn("compliance: fetch errors; polling again", zap.Error(fetchErr))
		}
		recs := fetches.Records()
		if len(recs) == 0 {
			continue
		}
		if err := s.transact(ctx, sess, cat, fr, dec, recs); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

func (s *Sink) newSession() (*kgo.GroupTransactSession, error) {
	topics := make([]string, 0, len(s.roots))
	for _, rs := range s.roots {
		topics = append(topics, rs.snapshotTopic)
	}
	opts := append(append([]kgo.Opt(nil), s.connOpts...),
		kgo.ConsumerGroup(s.groupID),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.TransactionalID(s.transactionalID),
		kgo.TransactionTimeout(s.cfg.Compliance.TransactionTimeout),
		kgo.FetchMaxWait(250*time.Millisecond),
		kgo.OnPartitionsRevoked(s.noteRevoked),
		kgo.OnPartitionsLost(s.noteRevoked),
	)
	opts = append(opts, kafkaconn.GroupOpts(s.cfg.Kafka, s.cfg.Compliance.SessionTimeout)...)
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return nil, fmt.Errorf("compliance: consumer group %s: %w", s.groupID, err)
	}
	return sess, nil
}

// transact runs one Kafka transaction over recs. Every output record is built before the first is
// produced, so a schema refused as incompatible leaves nothing written.
func (s *Sink) transact(ctx context.Context, sess *kgo.GroupTransactSession, cat catalog, fr framer, dec *snapshotDecoder, recs []*kgo.Record) error {
	start := time.Now()
	out := make([]*kgo.Record, 0, 2*len(recs))
	var dead []poisoned
	for _, rec := range recs {
		rs := s.byTopic[rec.Topic]
		if rs == nil || rec.Value == nil {
			continue
		}
		if reason, ok := s.retry.Refused(rec); ok {
			out = append(out, s.deadLetter(rec, reason))
			dead = append(dead, poisoned{rec.Topic, deadletter.CauseProduce})
			continue
		}
		snap, err := dec.decode(ctx, rec)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, avro.ErrRegistryUnavailable) {
				return &kafkaconn.SessionError{Err: err} // a new session after a backoff: the registry may come back
			}
			if stop, ret := s.stopOnPoison(ctx, sess, rec, recs, err); stop {
				return ret
			}
			out = append(out, s.deadLetter(rec, err))
			dead = append(dead, poisoned{rec.Topic, deadletter.CauseDecode})
			continue
		}
		built, err := s.build(ctx, cat, fr, rs, snap)
		var re *recordError
		if errors.As(err, &re) {
			// The snapshot decodes but its payload does not fit the compliance record (not a
			// JSON object, a value of another type): the record's own fault.
			if stop, ret := s.stopOnPoison(ctx, sess, rec, recs, re.err); stop {
				return ret
			}
			out = append(out, s.deadLetter(rec, re.err))
			dead = append(dead, poisoned{rec.Topic, deadletter.CauseDecode})
			continue
		}
		if err != nil {
			return err
		}
		out = append(out, built...)
	}
	if err := sess.Begin(); err != nil {
		return &kafkaconn.SessionError{Err: fmt.Errorf("compliance: begin transaction: %w", err)}
	}
	var mu sync.Mutex
	var produceErr error
	// A compliance record above kafka.max_record_bytes goes as its chunks, in this transaction.
	for _, r := range chunked.Expand(out, kafkaconn.RecordLimit(s.cfg.Kafka)) {
		sess.Produce(ctx, r, func(r *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				produceErr = errors.Join(produceErr, fmt.Errorf("produce to %s key %q: %w", r.Topic, r.Key, err))
				mu.Unlock()
			}
		})
	}
	// End runs on its own deadline: a shutdown in the middle still commits or aborts, so the
	// next member does not wait for the broker to time the transaction out.
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Compliance.TransactionTimeout)
	defer cancel()
	// Every promise must have run before deciding: kgo commits whatever succeeded when asked
	// to, so a record that failed in End's own flush would be lost with its offsets committed.
	if err := sess.Client().Flush(ctx); err != nil {
		_, _ = sess.End(endCtx, kgo.TryAbort)
		s.metrics.aborts.Inc()
		return &kafkaconn.SessionError{Err: fmt.Errorf("compliance: flush transaction: %w", err)}
	}
	mu.Lock()
	tryCommit := produceErr == nil && ctx.Err() == nil
	mu.Unlock()
	committed, err := sess.End(endCtx, kgo.TransactionEndTry(tryCommit))
	if err != nil {
		s.metrics.aborts.Inc()
		return &kafkaconn.SessionError{Err: fmt.Errorf("compliance: end transaction: %w", err)}
	}
	if !committed {
		s.metrics.aborts.Inc()
		if produceErr != nil {
			return s.retry.Failed(ctx, recs, produceErr)
		}
		return nil
	}
	s.retry.Committed(recs)
	s.metrics.txnSeconds.Observe(time.Since(start).Seconds())
	for _, r := range out {
		if r.Topic != s.poisonTopic {
			s.metrics.records.WithLabelValues(r.Topic).Inc()
		}
	}
	for _, p := range dead {
		s.metrics.poison.WithLabelValues(p.topic, p.cause).Inc()
	}
	return nil
}

// poisoned is one dead-lettered record of a transaction, for the poison metric.
type poisoned struct{ topic, cause string }

// deadLetter is the poison-topic record of rec, produced in the transaction that commits rec's
// offset.
func (s *Sink) deadLetter(rec *kgo.Record, reason error) *kgo.Record {
	return deadletter.Record(s.poisonTopic, config.StageCompliance, rec, reason, time.Now())
}

// build encodes snap for both compliance topics of rs (and the tombstone after a deleted
// version, when configured).
func (s *Sink) build(ctx context.Context, cat catalog, fr framer, rs *rootSink, snap avro.Snapshot) ([]*kgo.Record, error) {
	out := make([]*kgo.Record, 0, 3)
	for _, t := range []*topicSink{rs.log, rs.latest} {
		r, err := s.record(ctx, cat, fr, rs, t, snap)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if s.cfg.Compliance.TombstoneDeleted && snap.Verb == avro.VerbDeleted {
		out = append(out, &kgo.Record{Topic: rs.latest.name, Key: []byte(snap.Key), Headers: headers(snap)})
	}
	return out, nil
}

// recordError is a snapshot whose payload cannot become a compliance record: a poison record.
type recordError struct{ err error }

func (e *recordError) Error() string { return e.err.Error() }
func (e *recordError) Unwrap() error { return e.err }

// stopOnPoison handles a poison record rec of the polled recs under compliance.on_poison: stop.
// It reports whether the transaction ends here, with what transact returns: nil after rewinding
// to the committed offsets when other records came with rec (they are committed first, one per
// transaction), or the StopError. With dead_letter it reports false, after logging.
func (s *Sink) stopOnPoison(ctx context.Context, sess *kgo.GroupTransactSession, rec *kgo.Record, recs []*kgo.Record, reason error) (bool, error) {
	if s.cfg.Compliance.OnPoison != config.PoisonStop {
		s.log.Warn("compliance: poison snapshot record copied to the poison topic; continuing with the next record",
			zap.String("topic", rec.Topic), zap.Int32("partition", rec.Partition), zap.Int64("offset", rec.Offset),
			zap.String("poison_topic", s.poisonTopic), zap.Error(reason))
		return false, nil
	}
	if s.retry.StopLater(recs) {
		if err := sess.Begin(); err != nil {
			return true, &kafkaconn.SessionError{Err: fmt.Errorf("compliance: begin transaction: %w", err)}
		}
		if _, err := sess.End(context.WithoutCancel(ctx), kgo.TryAbort); err != nil {
			return true, &kafkaconn.SessionError{Err: fmt.Errorf("compliance: abort transaction: %w", err)}
		}
		return true, nil
	}
	err := &deadletter.StopError{Stage: config.StageCompliance,
		Record: deadletter.Position{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}, Reason: reason}
	s.log.Error("stopping on a poison record (compliance.on_poison: stop)", zap.Error(err))
	return true, err
}

// record encodes snap for topic t, reading the catalog again once when the payload shows the
// schema is stale (a column added or dropped).
func (s *Sink) record(ctx context.Context, cat catalog, fr framer, rs *rootSink, t *topicSink, snap avro.Snapshot) (*kgo.Record, error) {
	native, err := t.schema.native(snap)
	var stale *staleError
	if errors.As(err, &stale) {
		old := t.schema.schema.Fingerprint
		if err := s.loadSchemas(ctx, cat, fr, rs); err != nil {
			return nil, fmt.Errorf("compliance: root %s key %q version %d: payload field %s: %w", rs.root.Table, snap.Key, snap.Version, stale, err)
		}
		if t.schema.schema.Fingerprint == old {
			return nil, fmt.Errorf("compliance: root %s key %q version %d: payload field %s, and the table's columns in PostgreSQL say the same: "+
				"does the bubble-up stage run with another model or database? Align the configs", rs.root.Table, snap.Key, snap.Version, stale)
		}
		native, err = t.schema.native(snap)
	}
	if err != nil {
		return nil, &recordError{fmt.Errorf("compliance: root %s key %q version %d for topic %s: %w", rs.root.Table, snap.Key, snap.Version, t.name, err)}
	}
	value, err := t.schema.codec.BinaryFromNative(append(make([]byte, 0, 256), t.prefix...), native)
	if err != nil {
		return nil, &recordError{fmt.Errorf("compliance: encode root %s key %q version %d for topic %s: %w", rs.root.Table, snap.Key, snap.Version, t.name, err)}
	}
	return &kgo.Record{Topic: t.name, Key: []byte(snap.Key), Value: value, Headers: headers(snap)}, nil
}

func headers(s avro.Snapshot) []kgo.RecordHeader {
	return []kgo.RecordHeader{
		{Key: headerEventType, Value: []byte(s.EventType)},
		{Key: headerVersion, Value: []byte(strconv.FormatInt(s.Version, 10))},
		{Key: headerTenant, Value: []byte(s.Tenant)},
	}
}

// snapshotDecoder decodes framed snapshot records; only Run's goroutine uses it.
type snapshotDecoder struct {
	reg   avro.Registry
	known map[string]bool // writer schema text → is a walhook.Snapshot
}

func (d *snapshotDecoder) decode(ctx context.Context, rec *kgo.Record) (avro.Snapshot, error) {
	if err := chunked.Err(rec); err != nil {
		return avro.Snapshot{}, fmt.Errorf("compliance: %w", err)
	}
	text, body, err := d.reg.Resolve(ctx, rec.Value)
	if err != nil {
		return avro.Snapshot{}, fmt.Errorf("compliance: %s[%d]@%d: resolve writer schema: %w", rec.Topic, rec.Partition, rec.Offset, err)
	}
	ok, seen := d.known[text]
	if !seen {
		s, err := avro.ParseSchema(text)
		ok = err == nil && s.FullName == "walhook.Snapshot"
		d.known[text] = ok
	}
	if !ok {
		return avro.Snapshot{}, fmt.Errorf("compliance: %s[%d]@%d is not a walhook.Snapshot record; only the bubble-up stage may write to snapshot topics",
			rec.Topic, rec.Partition, rec.Offset)
	}
	decode := avro.DecodeSnapshot
	if chunked.Reassembled(rec) {
		decode = avro.DecodeSnapshotShared // the record's own buffer: no second copy of a large payload
	}
	snap, err := decode(body)
	if err != nil {
		return avro.Snapshot{}, fmt.Errorf("compliance: %s[%d]@%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
	}
	return snap, nil
}

// noteRevoked is the rebalance callback: the loop forgets the unfinished chunk groups of the
// partitions given up (their next owner reads them again from the committed offsets).
func (s *Sink) noteRevoked(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
	s.revokedMu.Lock()
	defer s.revokedMu.Unlock()
	for t, ps := range parts {
		for _, p := range ps {
			s.revoked = append(s.revoked, topicPartition{t, p})
		}
	}
}

// forgetRevoked applies noteRevoked's partitions to asm and returns asm.
func (s *Sink) forgetRevoked(asm *chunked.Assembler) *chunked.Assembler {
	s.revokedMu.Lock()
	defer s.revokedMu.Unlock()
	for _, tp := range s.revoked {
		asm.Forget(tp.topic, tp.partition)
	}
	s.revoked = nil
	return asm
}

type topicPartition struct {
	topic     string
	partition int32
}
