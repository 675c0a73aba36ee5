package cdc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/kafkaconn"
)

// heartbeatPrefix is the pg_logical_emit_message prefix of heartbeats; other "walhook."
// prefixes are markers (MarkerFunc).
const heartbeatPrefix = "walhook.heartbeat"

// streamer is the replication loop. One goroutine (Run's) owns it and everything in it but
// the tracker, which kgo's promises update too.
type streamer struct {
	s *Stage
	// maxRecord is kafka.max_record_bytes: larger records are produced as chunks.
	maxRecord int
	repl      *pgconn.PgConn
	cat       *catalog
	cl        *kgo.Client
	reg       avro.Registry
	tr        *tracker
	spill     *spillBuffers
	ix        *keyIndex
	roles     map[string][]config.TableRole
	rels      map[uint32]*relation
	dec       decoder

	manual    context.Context
	refTopics []string
	// topicParts is the partition count of every reference and change topic: watermarks and
	// truncations go to every partition (run.go topicPartitionCounts).
	topicParts   map[string]int32
	changeTopics []string
	refTables    map[string]string // reference topic → table

	txnEndSchema, watermarkSchema *avro.Schema
	markerPrefixes                map[markerKey][]byte
	kindChange, kindTxnEnd        []byte
	kindWatermark                 []byte
	kindTruncate, kindTruncateEnd []byte
	opHdr                         [avro.OpRead + 1][]byte

	cur       *txn   // the open non-streamed transaction
	txnSeq    uint64 // seq of the newest transaction begun
	inStream  bool
	streamXid uint32

	scratch, slab []byte
	// recSlab and hdrSlab hand out records and headers a slab at a time (txn.go).
	recSlab   []kgo.Record
	hdrSlab   []kgo.RecordHeader
	tableHdrs map[string][]byte
	rows      int64 // row changes emitted (metrics)
	produced  int64

	serverEnd  pglogrepl.LSN
	nextStatus time.Time
	sent       pglogrepl.LSN // last confirmed LSN sent
	onConfirm  func(pglogrepl.LSN)

	// snap takes snapshots with watermarks (snapshot.go); nil when not running.
	snap *snapshotter
	// marks coalesces the reference watermarks of committed transactions (watermark.go).
	marks refMarks
}

func newStreamer(s *Stage) (*streamer, error) {
	st := &streamer{
		s: s, maxRecord: kafkaconn.RecordLimit(s.cfg.Kafka), roles: map[string][]config.TableRole{}, rels: map[uint32]*relation{},
		topicParts: map[string]int32{}, refTables: map[string]string{}, markerPrefixes: map[markerKey][]byte{},
		kindChange: []byte("change"), kindTxnEnd: []byte("txn-end"), kindWatermark: []byte("watermark"),
		kindTruncate: []byte("truncate"), kindTruncateEnd: []byte("truncate-end"),
		manual: manualPartition{context.Background()},
	}
	for _, r := range s.cfg.Model.TableRoles() {
		st.roles[r.Table] = append(st.roles[r.Table], r)
		if r.Root != nil && r.Reference == nil {
			if topic := s.cfg.Kafka.ChangeTopic(*r.Root); !slices.Contains(st.changeTopics, topic) {
				st.changeTopics = append(st.changeTopics, topic)
			}
		}
		if r.Reference != nil {
			topic := s.cfg.Kafka.ReferenceTopic(r.Table)
			if _, ok := st.refTables[topic]; !ok {
				st.refTopics = append(st.refTopics, topic)
				st.refTables[topic] = r.Table
			}
		}
	}
	for op := avro.OpCreate; op <= avro.OpRead; op++ {
		st.opHdr[op] = []byte(op.String())
	}
	var err error
	if st.txnEndSchema, err = avro.ParseSchema(avro.TxnEndSchema()); err != nil {
		return nil, err
	}
	if st.watermarkSchema, err = avro.ParseSchema(avro.WatermarkSchema()); err != nil {
		return nil, err
	}
	return st, nil
}

// run streams until ctx is done (nil) or an error. The read deadline of the replication
// connection is the next status update, so the loop wakes at least every StatusInterval.
func (st *streamer) run(ctx context.Context) error {
	interval := st.s.cfg.CDC.StatusInterval
	stop := context.AfterFunc(ctx, func() { _ = st.repl.Conn().SetReadDeadline(time.Now()) })
	defer stop()
	st.nextStatus = time.Now()
	for {
		if ctx.Err() != nil {
			return nil
		}
		if err := st.maybeStatus(interval); err != nil {
			return err
		}
		if err := st.maybeWatermarks(ctx); err != nil {
			return err
		}
		msg, err := st.repl.ReceiveMessage(context.Background())
		if err != nil {
			if pgconn.Timeout(err) {
				continue
			}
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("cdc: replication connection: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if err := st.copyData(ctx, m.Data); err != nil {
				return err
			}
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("cdc: replication stream: %w", pgconn.ErrorResponseToPgError(m))
		case *pgproto3.CopyDone:
			return errors.New("cdc: the server ended the replication stream; it restarts on the next run")
		}
		if err := st.tr.failed(); err != nil {
			return fmt.Errorf("cdc: produce to Kafka failed after retries: %w", err)
		}
	}
}

// maybeStatus sends standby status when a status interval has passed.
func (st *streamer) maybeStatus(interval time.Duration) error {
	now := time.Now()
	if now.Before(st.nextStatus) {
		return nil
	}
	st.nextStatus = now.Add(interval)
	if err := st.repl.Conn().SetReadDeadline(st.nextStatus); err != nil {
		return err
	}
	return st.sendStatus(false)
}

// sendStatus reports the confirmed LSN as written, flushed and applied: never the received
// position. When idle it asks for a reply, whose keepalive lets an idle slot advance.
func (st *streamer) sendStatus(force bool) error {
	confirmed, _ := st.tr.state()
	txns, _ := st.tr.pending()
	idle := txns == 0 && st.cur == nil
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), st.repl, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: confirmed, WALFlushPosition: confirmed, WALApplyPosition: confirmed,
		ReplyRequested: idle && !force,
	})
	if err != nil {
		return fmt.Errorf("cdc: send standby status (confirmed %s): %w", confirmed, err)
	}
	if confirmed != st.sent {
		st.sent = confirmed
		st.s.metrics.confirmedLSN.Set(float64(confirmed))
		if st.onConfirm != nil {
			st.onConfirm(confirmed)
		}
	}
	if st.serverEnd > confirmed {
		st.s.metrics.lagBytes.Set(float64(st.serverEnd - confirmed))
	} else {
		st.s.metrics.lagBytes.Set(0)
	}
	return nil
}

func (st *streamer) copyData(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("cdc: keepalive: %w", err)
		}
		return st.onKeepalive(pkm)
	case pglogrepl.XLogDataByteID:
		if len(data) < 26 {
			return fmt.Errorf("cdc: XLogData of %d bytes is too short", len(data))
		}
		walStart := pglogrepl.LSN(binary.BigEndian.Uint64(data[1:]))
		if end := pglogrepl.LSN(binary.BigEndian.Uint64(data[9:])); end > st.serverEnd {
			st.serverEnd = end
		}
		if err := st.message(ctx, data[25:]); err != nil {
			return fmt.Errorf("%w (WAL position %s)", err, walStart)
		}
	}
	return nil
}

// onKeepalive handles a primary keepalive. When no transaction is open or in flight, its
// ServerWALEnd is safe to confirm: the walsender has decoded everything before it, and every
// transaction that committed before it has been sent to us and, the tracker being empty,
// acknowledged by Kafka. A transaction still running at that point commits after it, so its
// commit LSN is above the confirmed one and PostgreSQL sends it again after a restart (the
// slot's restart_lsn, which PostgreSQL keeps at the oldest running transaction, is not what
// we confirm). Streamed transactions not yet committed are in that case too.
func (st *streamer) onKeepalive(pkm pglogrepl.PrimaryKeepaliveMessage) error {
	if pkm.ServerWALEnd > st.serverEnd {
		st.serverEnd = pkm.ServerWALEnd
	}
	if st.cur == nil {
		st.tr.idle(pkm.ServerWALEnd)
	}
	if pkm.ReplyRequested {
		return st.sendStatus(true)
	}
	return nil
}

// message handles one pgoutput message.
func (st *streamer) message(ctx context.Context, msg []byte) error {
	switch msg[0] {
	case 'I', 'U', 'D':
		if st.inStream {
			if len(msg) < 5 {
				return fmt.Errorf("cdc: streamed %q message too short", msg[0])
			}
			return st.spill.add(st.streamXid, binary.BigEndian.Uint32(msg[1:]), msg)
		}
		if st.cur == nil {
			return fmt.Errorf("cdc: %q message outside a transaction", msg[0])
		}
		return st.row(ctx, st.cur, msg, false)
	case 'R', 'M', 'T':
		if st.inStream {
			sub := st.streamXid
			if msg[0] == 'M' && len(msg) >= 5 {
				sub = binary.BigEndian.Uint32(msg[1:])
			}
			return st.spill.add(st.streamXid, sub, msg)
		}
		return st.other(ctx, st.cur, msg, false)
	case 'Y', 'O':
		return nil // types are looked up by OID; origins are not used
	}
	m, err := pglogrepl.ParseV2(msg, st.inStream)
	if err != nil {
		return fmt.Errorf("cdc: parse pgoutput %q message: %w", msg[0], err)
	}
	switch m := m.(type) {
	case *pglogrepl.BeginMessage:
		st.cur = st.begin(m.Xid, m.FinalLSN, m.CommitTime)
	case *pglogrepl.CommitMessage:
		if st.cur == nil {
			return errors.New("cdc: Commit without Begin")
		}
		t := st.cur
		st.cur = nil
		return st.commit(ctx, t, m.TransactionEndLSN)
	case *pglogrepl.StreamStartMessageV2:
		st.inStream, st.streamXid = true, m.Xid
	case *pglogrepl.StreamStopMessageV2:
		st.inStream = false
	case *pglogrepl.StreamAbortMessageV2:
		return st.spill.abort(m.Xid, m.SubXid)
	case *pglogrepl.StreamCommitMessageV2:
		t := st.begin(m.Xid, m.CommitLSN, m.CommitTime)
		err := st.spill.replay(m.Xid, func(msg []byte) error {
			if msg[0] == 'I' || msg[0] == 'U' || msg[0] == 'D' {
				return st.row(ctx, t, msg, true)
			}
			return st.other(ctx, t, msg, true)
		})
		if err != nil {
			return fmt.Errorf("cdc: replay streamed xid %d (commit LSN %s): %w", m.Xid, m.CommitLSN, err)
		}
		return st.commit(ctx, t, m.TransactionEndLSN)
	}
	return nil
}

// row decodes and emits one row change of t.
func (st *streamer) row(ctx context.Context, t *txn, msg []byte, inStream bool) error {
	rc, err := st.dec.decodeRow(msg, inStream)
	if err != nil {
		return fmt.Errorf("%w (xid %d, commit LSN %s)", err, t.xid, t.commitLSN)
	}
	rel := st.rels[rc.relID]
	if rel == nil {
		return fmt.Errorf("cdc: %s of relation %d before its Relation message (xid %d, commit LSN %s)", rc.op, rc.relID, t.xid, t.commitLSN)
	}
	t.tables |= tableBit(rel.id)
	if st.snap != nil && st.snap.open > 0 {
		st.snap.touchedRow(rel, &rc)
	}
	if err := st.emitRow(ctx, t, rel, &rc); err != nil {
		return err
	}
	st.s.metrics.rows.Inc()
	if st.rows&255 == 0 {
		return st.backpressure(ctx)
	}
	return nil
}

// backpressure waits while too much is in flight, keeping the replication connection alive,
// and sends status when due during long transactions.
func (st *streamer) backpressure(ctx context.Context) error {
	interval := st.s.cfg.CDC.StatusInterval
	if err := st.maybeStatus(interval); err != nil {
		return err
	}
	if !st.tr.over(maxInflightBytes) {
		return st.tr.failed()
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	return st.tr.waitRoom(ctx, maxInflightBytes, tick.C, func() error { return st.sendStatus(true) })
}

// other handles Relation, logical decoding Message and Truncate messages (t is nil outside a
// transaction).
func (st *streamer) other(ctx context.Context, t *txn, msg []byte, inStream bool) error {
	m, err := pglogrepl.ParseV2(msg, inStream)
	if err != nil {
		return fmt.Errorf("cdc: parse pgoutput %q message: %w", msg[0], err)
	}
	switch m := m.(type) {
	case *pglogrepl.RelationMessageV2:
		return st.relation(ctx, &m.RelationMessage)
	case *pglogrepl.LogicalDecodingMessageV2:
		return st.logicalMessage(ctx, t, &m.LogicalDecodingMessage)
	case *pglogrepl.TruncateMessageV2:
		return st.truncate(ctx, t, &m.TruncateMessage)
	}
	return nil
}

func (st *streamer) logicalMessage(ctx context.Context, t *txn, m *pglogrepl.LogicalDecodingMessage) error {
	if !strings.HasPrefix(m.Prefix, "walhook.") {
		return nil
	}
	if m.Prefix == heartbeatPrefix {
		if m.Transactional || t != nil {
			return nil
		}
		return st.heartbeatSeen(ctx, m.LSN)
	}
	if st.snap != nil && strings.HasPrefix(m.Prefix, snapshotPrefix) {
		return st.snap.marker(ctx, st, t, m.Prefix, m.Content)
	}
	if st.s.onMarker == nil {
		return nil
	}
	mk := Marker{Prefix: m.Prefix, Content: m.Content, LSN: uint64(m.LSN), Transactional: m.Transactional}
	if t != nil {
		mk.Xid, mk.CommitLSN = t.xid, uint64(t.commitLSN)
	}
	return st.s.onMarker(ctx, mk)
}

// relation applies a Relation message: a new relation, or a new version of a known one when
// its columns changed (ALTER TABLE), compiled to a new change schema without a restart.
func (st *streamer) relation(ctx context.Context, m *pglogrepl.RelationMessage) error {
	name := m.Namespace + "." + m.RelationName
	t, err := st.cat.table(ctx, m)
	if err != nil {
		return fmt.Errorf("cdc: relation %s (%d): %w", name, m.RelationID, err)
	}
	old := st.rels[m.RelationID]
	if old != nil && sameShape(old.table, t) {
		return nil
	}
	rel := &relation{id: m.RelationID, name: name, table: t, nameHdr: []byte(name), prefixes: map[string][]byte{}}
	roles := st.roles[name]
	if len(roles) > 0 {
		if rel.schema, err = avro.NewChangeSchema(t); err != nil {
			return fmt.Errorf("cdc: relation %s: %w", name, err)
		}
		if rel.routes, err = routes(st.s.cfg.Kafka, roles, t); err != nil {
			return err
		}
	}
	st.rels[m.RelationID] = rel
	if old != nil {
		st.s.log.Info("table changed: new change schema version", zap.String("table", name), zap.Int("columns", len(t.Columns)))
	}
	return nil
}
