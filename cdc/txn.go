package cdc

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/chunked"
	"github.com/walhook/walhook/internal/tracing"
)

// Header names and values of every record.
const (
	hdrKind  = "walhook-kind"
	hdrTable = "walhook-table"
	hdrOp    = "walhook-op"
	hdrLSN   = "walhook-lsn"
	// watermarkKey keys watermark records so that compaction keeps the newest per partition.
	watermarkKey = "walhook.watermark"
)

// txn is one source transaction being written: a non-streamed one from Begin to Commit, or a
// streamed one replayed at its Stream Commit. Every record carries its commit LSN, so rows are
// produced as they arrive.
type txn struct {
	xid        uint32
	seq        uint64 // numbers the transactions of the streamer (header caches, relation.hdrs)
	commitLSN  pglogrepl.LSN
	commitTime time.Time
	index      int64
	ack        *ackTxn
	lsnHdr     []byte
	// span and traceHdr (its traceparent, formatted once) are nil when tracing is disabled.
	span     trace.Span
	traceHdr []byte
	// touched lists the roots the transaction changed, in first-touch order, for TxnEnd.
	touched []rootTouch
	// touchIdx maps topic → root key → index in touched. Two levels, so that a lookup with
	// the key's bytes (string(b) in an index expression) does not allocate.
	touchIdx map[string]map[string]int
	last     int             // index in touched of the root touched last, -1 before the first
	refs     map[string]bool // reference topics written
	tables   uint64          // tableBit of every table whose rows it changed (commitLog)
	// truncated lists the change topics a TRUNCATE of the transaction was written to, each
	// with its root, in first-truncate order: commit ends the truncation on every partition.
	truncated []truncatedTopic
}

type rootTouch struct {
	root  *config.Root
	topic string
	key   string
	rows  int32
}

func (st *streamer) begin(xid uint32, commit pglogrepl.LSN, at time.Time) *txn {
	t := &txn{
		xid: xid, seq: st.txnSeq + 1, commitLSN: commit, commitTime: at, ack: st.tr.open(),
		lsnHdr: []byte(commit.String()), last: -1, touchIdx: map[string]map[string]int{}, refs: map[string]bool{},
	}
	st.txnSeq = t.seq
	if st.s.tracer != nil {
		st.traceBegin(t)
	}
	return t
}

// traceBegin starts the transaction's span and formats its traceparent once for every record.
func (st *streamer) traceBegin(t *txn) {
	_, t.span = st.s.tracer.Start(context.Background(), "cdc.txn", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.Int64("walhook.xid", int64(t.xid)), attribute.String("walhook.commit_lsn", string(t.lsnHdr))))
	t.traceHdr = tracing.Append(make([]byte, 0, 55), t.span.SpanContext())
}

// traceEnd ends the transaction's span.
func (t *txn) traceEnd() {
	t.span.SetAttributes(attribute.Int64("walhook.rows", t.index), attribute.Int("walhook.roots", len(t.touched)))
	t.span.End()
}

// headers builds the headers of a record, carved from a slab (records outlive the call; a
// slab is dropped by the streamer when full and freed once its records are acknowledged).
// tp is the transaction's traceparent, nil when tracing is disabled.
func (st *streamer) headers(kind, table, op, lsn, tp []byte) []kgo.RecordHeader {
	if len(st.hdrSlab)+5 > cap(st.hdrSlab) {
		st.hdrSlab = make([]kgo.RecordHeader, 0, 4096)
	}
	start := len(st.hdrSlab)
	h := append(st.hdrSlab, kgo.RecordHeader{Key: hdrKind, Value: kind}, kgo.RecordHeader{Key: hdrTable, Value: table})
	if op != nil {
		h = append(h, kgo.RecordHeader{Key: hdrOp, Value: op})
	}
	h = append(h, kgo.RecordHeader{Key: hdrLSN, Value: lsn})
	if tp != nil {
		h = append(h, kgo.RecordHeader{Key: tracing.Header, Value: tp})
	}
	st.hdrSlab = h
	return h[start:len(h):len(h)]
}

// changeHeaders returns the headers of a change record of rel with op in t. They are the same
// for every such record of the transaction, so one slice is built per relation, op and
// transaction and shared by the records (kgo only reads headers).
func (st *streamer) changeHeaders(t *txn, rel *relation, op avro.Op) []kgo.RecordHeader {
	c := &rel.hdrs[op]
	if c.txn != t.seq || c.h == nil {
		c.txn, c.h = t.seq, st.headers(st.kindChange, rel.nameHdr, st.opHdr[op], t.lsnHdr, t.traceHdr)
	}
	return c.h
}

// record returns a zeroed record from a slab (one allocation per recordSlab records).
func (st *streamer) record() *kgo.Record {
	if len(st.recSlab) == cap(st.recSlab) {
		st.recSlab = make([]kgo.Record, 0, recordSlab)
	}
	st.recSlab = st.recSlab[:len(st.recSlab)+1]
	return &st.recSlab[len(st.recSlab)-1]
}

const recordSlab = 512

// newRecord fills a slab record.
func (st *streamer) newRecord(topic string, key, value []byte, headers []kgo.RecordHeader) *kgo.Record {
	r := st.record()
	r.Topic, r.Key, r.Value, r.Headers = topic, key, value, headers
	return r
}

// emitRow writes one row change to every route of its table.
func (st *streamer) emitRow(ctx context.Context, t *txn, rel *relation, rc *rowChange) error {
	if len(rel.routes) == 0 {
		return nil
	}
	var before, after []avro.Cell
	if rc.op != avro.OpCreate {
		before = rc.old
	}
	if rc.op != avro.OpDelete {
		after = rc.new
	}
	h := avro.ChangeHeader{Op: rc.op, CommitLSN: uint64(t.commitLSN), Xid: t.xid, CommitTime: t.commitTime, Index: t.index}
	t.index++
	body, err := rel.schema.AppendChange(st.scratch[:0], h, before, after)
	if err != nil {
		return fmt.Errorf("cdc: encode %s %s of %s (xid %d, commit LSN %s): %w", rc.op, "row", rel.name, t.xid, t.commitLSN, err)
	}
	st.scratch = body
	st.rows++
	for i := range rel.routes {
		if err := st.emitRoute(ctx, t, rel, &rel.routes[i], rc, body, h); err != nil {
			return err
		}
	}
	return nil
}

func (st *streamer) emitRoute(ctx context.Context, t *txn, rel *relation, rt *route, rc *rowChange, body []byte, h avro.ChangeHeader) error {
	raw, ok := rowKey(rc, rt.keyCol)
	if !ok {
		return fmt.Errorf("cdc: %s %s row (xid %d, commit LSN %s) has no value in column %q, which keys it: "+
			"the column is null or the replica identity does not carry it; run `ALTER TABLE %s REPLICA IDENTITY FULL;`",
			rel.name, rc.op, t.xid, t.commitLSN, rel.table.Columns[rt.keyCol].Name, table(rel.name))
	}
	key, err := st.rootKey(ctx, rt, raw)
	if err != nil {
		return err
	}
	if rt.ownCol >= 0 {
		if own, ok := rowKey(rc, rt.ownCol); ok && st.ix.learn(rel.name, string(own), string(key)) {
			st.produce(ctx, t, &kgo.Record{Topic: st.s.indexTopic(), Key: indexKey(rel.name, string(own)), Value: key})
		}
	}
	prefix, err := st.prefix(ctx, rel, rt.topic)
	if err != nil {
		return err
	}
	// A subordinate moved to another root (or a root whose key changed): the old root sees a
	// delete, so its state drops the row.
	if rt.kind != routeRef {
		if oldRaw, moved := oldKey(rc, rt.keyCol); moved {
			if err := st.emitMovedAway(ctx, t, rel, rt, rc, oldRaw, prefix, h); err != nil {
				return err
			}
		}
	}
	st.produce(ctx, t, st.newRecord(rt.topic, key, st.frame(prefix, body), st.changeHeaders(t, rel, rc.op)))
	if rt.kind == routeRef {
		t.refs[rt.topic] = true
	} else {
		t.touch(rt, key)
	}
	return nil
}

func (st *streamer) emitMovedAway(ctx context.Context, t *txn, rel *relation, rt *route, rc *rowChange, oldRaw, prefix []byte, h avro.ChangeHeader) error {
	oldKey, err := st.rootKey(ctx, rt, oldRaw)
	if err != nil {
		return err
	}
	h.Op = avro.OpDelete
	body, err := rel.schema.AppendChange(nil, h, rc.old, nil)
	if err != nil {
		return fmt.Errorf("cdc: encode moved %s row (xid %d): %w", rel.name, t.xid, err)
	}
	st.produce(ctx, t, st.newRecord(rt.topic, oldKey, st.frame(prefix, body),
		st.headers(st.kindChange, rel.nameHdr, st.opHdr[avro.OpDelete], t.lsnHdr, t.traceHdr)))
	t.touch(rt, oldKey)
	return nil
}

// rootKey turns the keying column's value into the record key, copied into the streamer's
// slab (raw aliases the replication buffer; the record outlives it).
func (st *streamer) rootKey(ctx context.Context, rt *route, raw []byte) ([]byte, error) {
	if rt.kind != routeNested {
		return st.frame(nil, raw), nil
	}
	k, err := st.ix.rootOf(ctx, st.cat.conn, rt.via, string(raw))
	if err != nil {
		return nil, err
	}
	return st.frame(nil, []byte(k)), nil
}

// touch counts a row of the root keyed key. It keeps a string copy of the key, never key
// itself: key points into a value slab, and holding it for the whole transaction would keep
// every slab of a huge transaction alive.
func (t *txn) touch(rt *route, key []byte) {
	// Fast path: the root touched last (a root row and its subordinates often come together).
	if t.last >= 0 && t.last < len(t.touched) {
		if l := &t.touched[t.last]; l.topic == rt.topic && l.key == string(key) {
			l.rows++
			return
		}
	}
	byKey := t.touchIdx[rt.topic]
	if byKey == nil {
		byKey = map[string]int{}
		t.touchIdx[rt.topic] = byKey
	}
	i, ok := byKey[string(key)]
	if !ok {
		i = len(t.touched)
		k := string(key)
		byKey[k] = i
		t.touched = append(t.touched, rootTouch{root: rt.root, topic: rt.topic, key: k})
	}
	t.touched[i].rows++
	t.last = i
}

// commit writes the transaction's end markers and hands it to the tracker, which confirms
// end once Kafka has acknowledged every record of it and of the transactions before it.
func (st *streamer) commit(ctx context.Context, t *txn, end pglogrepl.LSN) error {
	var endHdrs []kgo.RecordHeader // shared by the TxnEnds of one root table (touched is in first-touch order, so mostly one table)
	var endTable string
	for i, r := range t.touched {
		if endHdrs == nil || r.root.Table != endTable {
			endHdrs, endTable = st.headers(st.kindTxnEnd, st.tableHdr(r.root.Table), nil, t.lsnHdr, t.traceHdr), r.root.Table
		}
		prefix, err := st.markerPrefix(ctx, r.topic, st.txnEndSchema)
		if err != nil {
			return err
		}
		body := avro.AppendTxnEnd(st.scratch[:0], avro.TxnEnd{
			Table: r.root.Table, RootKey: r.key, CommitLSN: uint64(t.commitLSN), Xid: t.xid,
			CommitTime: t.commitTime, Rows: r.rows,
		})
		st.scratch = body
		st.produce(ctx, t, st.newRecord(r.topic, st.frameString(r.key), st.frame(prefix, body), endHdrs))
		// A transaction can touch a million roots: its TxnEnds are under the in-flight
		// bound like its rows.
		if i&255 == 255 {
			if err := st.backpressure(ctx); err != nil {
				return err
			}
		}
	}
	if err := st.truncateEnds(ctx, t); err != nil {
		return err
	}
	for topic := range t.refs {
		if err := st.watermark(ctx, t.ack, topic, t.commitLSN, t.lsnHdr); err != nil {
			return err
		}
	}
	st.tr.close(t.ack, end)
	if st.snap != nil {
		st.snap.commits.add(t.xid, t.tables)
	}
	st.wmCommitted(t)
	st.s.metrics.txns.Inc()
	if t.span != nil {
		t.traceEnd()
	}
	return nil
}

// watermark writes a Watermark with lsn to every partition of a reference topic: a reader of
// the topic has seen every change up to lsn once it has read past it on every partition.
func (st *streamer) watermark(ctx context.Context, a *ackTxn, topic string, lsn pglogrepl.LSN, lsnHdr []byte) error {
	prefix, err := st.markerPrefix(ctx, topic, st.watermarkSchema)
	if err != nil {
		return err
	}
	body := avro.AppendWatermark(nil, avro.Watermark{CommitLSN: uint64(lsn), Time: time.Now().UTC()})
	value := st.frame(prefix, body)
	table := []byte(st.refTables[topic])
	for p := int32(0); p < st.topicParts[topic]; p++ {
		st.produceAck(ctx, a, &kgo.Record{
			Topic: topic, Key: []byte(watermarkKey), Value: value, Partition: p, Context: st.manual,
			Headers: st.headers(st.kindWatermark, table, nil, lsnHdr, nil),
		})
	}
	return nil
}

// heartbeatSeen handles a heartbeat read back from the slot: watermarks just below its LSN on
// every reference topic, and a position to confirm once they (and everything before) are acked.
//
// A non-transactional message's LSN is the END of its WAL record, and a commit LSN is the START
// of a commit record: when the message ends on an 8-byte boundary the next record, possibly a
// commit, starts exactly at lsn and is decoded after the message. So the heartbeat covers commit
// LSNs below lsn only; a watermark at lsn would let bubble-up read a reference row of the
// transaction committed at lsn before it is produced. (Confirming lsn is right: PostgreSQL
// resends a transaction whose commit LSN is not below the confirmed position.)
func (st *streamer) heartbeatSeen(ctx context.Context, lsn pglogrepl.LSN) error {
	a := st.tr.open()
	covered := lsn - 1
	hdr := []byte(covered.String())
	for _, topic := range st.refTopics {
		if err := st.watermark(ctx, a, topic, covered, hdr); err != nil {
			return err
		}
	}
	st.tr.close(a, lsn)
	return nil
}

// frameString is frame for a string (a record key).
func (st *streamer) frameString(s string) []byte {
	n := len(s)
	if len(st.slab)+n > cap(st.slab) {
		st.slab = make([]byte, 0, max(256<<10, n))
	}
	start := len(st.slab)
	st.slab = append(st.slab, s...)
	return st.slab[start : start+n : start+n]
}

// frame returns prefix+body in memory of its own (records outlive the scratch buffer).
func (st *streamer) frame(prefix, body []byte) []byte {
	n := len(prefix) + len(body)
	if len(st.slab)+n > cap(st.slab) {
		st.slab = make([]byte, 0, max(256<<10, n))
	}
	start := len(st.slab)
	st.slab = append(append(st.slab, prefix...), body...)
	return st.slab[start : start+n : start+n]
}

func (st *streamer) produce(ctx context.Context, t *txn, r *kgo.Record) {
	st.produceAck(ctx, t.ack, r)
}

// produceAck produces r as part of a; a's promise (one per transaction) acknowledges it to
// the tracker. A record above kafka.max_record_bytes goes as its chunks, one after the other
// on its partition (the idempotent producer keeps their order), before anything produced
// after it; the slot is confirmed past it only once every chunk is acknowledged.
func (st *streamer) produceAck(ctx context.Context, a *ackTxn, r *kgo.Record) {
	if chunks := chunked.Split(r, st.maxRecord); chunks != nil {
		st.s.metrics.chunkedRecords.Inc()
		st.s.metrics.chunks.Add(float64(len(chunks)))
		for _, c := range chunks {
			st.produceRecord(a, c)
		}
		return
	}
	st.produceRecord(a, r)
}

func (st *streamer) produceRecord(a *ackTxn, r *kgo.Record) {
	st.tr.add(a, recordSize(r))
	if st.tr.observe == nil {
		// Set before the first record reaches kgo, whose goroutines read it.
		lat := st.s.metrics.produceLat
		st.tr.observe = func(r *kgo.Record) { lat.Observe(time.Since(r.Timestamp).Seconds()) }
	}
	// Records are produced with a context of their own: a canceled Run must not fail records
	// already handed to kgo (shutdown flushes them instead).
	st.cl.Produce(context.Background(), r, a.promise)
	st.produced++
}

// tableHdr returns the walhook-table header value of a table name, cached.
func (st *streamer) tableHdr(name string) []byte {
	b, ok := st.tableHdrs[name]
	if !ok {
		if st.tableHdrs == nil {
			st.tableHdrs = map[string][]byte{}
		}
		b = []byte(name)
		st.tableHdrs[name] = b
	}
	return b
}

// prefix returns the registry prefix of rel's current schema for topic.
func (st *streamer) prefix(ctx context.Context, rel *relation, topic string) ([]byte, error) {
	if p, ok := rel.prefixes[topic]; ok {
		return p, nil
	}
	p, err := st.reg.Prefix(ctx, topic, rel.schema.Schema())
	if err != nil {
		return nil, fmt.Errorf("cdc: register the schema of %s for topic %s: %w", rel.name, topic, err)
	}
	rel.prefixes[topic] = p
	return p, nil
}

func (st *streamer) markerPrefix(ctx context.Context, topic string, s *avro.Schema) ([]byte, error) {
	k := markerKey{topic, s}
	if p, ok := st.markerPrefixes[k]; ok {
		return p, nil
	}
	p, err := st.reg.Prefix(ctx, topic, s)
	if err != nil {
		return nil, fmt.Errorf("cdc: register schema %s for topic %s: %w", s.FullName, topic, err)
	}
	st.markerPrefixes[k] = p
	return p, nil
}

type markerKey struct {
	topic  string
	schema *avro.Schema
}
