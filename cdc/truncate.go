package cdc

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
)

// A TRUNCATE removes rows cdc has no keys of (the key index knows only intermediate
// subordinates, and nothing knows every root). Bubble-up does: each partition's state holds
// every root keyed to it. So a TRUNCATE is written, at its place in the transaction, to every
// partition of each topic a truncated table is routed to, and bubble-up applies it to the
// roots of that partition (docs/cdc.md "TRUNCATE"):
//
//   - change topic: a record with walhook-kind truncate, walhook-table the truncated table,
//     key truncateKey, value a walhook.Watermark (the commit LSN and commit time), on every
//     partition; after the transaction's TxnEnds a walhook-kind truncate-end record on every
//     partition of the topic (a walhook.TxnEnd of the root table with an empty root key), at
//     which bubble-up ends the transaction for every root the truncation changed that no
//     TxnEnd ended;
//   - reference topic: the same truncate record (pipeline/doc.go "Truncation"), and the
//     transaction's watermark like any change of the table.
//
// Records of a partition keep their produce order, so rows the transaction wrote before the
// TRUNCATE are removed with the rest and rows it wrote after stay.

// truncatedTopic is a change topic a transaction truncated a table of.
type truncatedTopic struct {
	topic string
	root  *config.Root
}

// truncateKey is the record key of the truncation records of the transaction committed at
// lsn: distinct per transaction, so compaction of a reference topic keeps every one.
func truncateKey(lsn pglogrepl.LSN) []byte { return []byte("walhook.truncate." + lsn.String()) }

// truncate writes a TRUNCATE of t (one Truncate message, every table of the statement,
// CASCADE included) to the topics of its captured tables.
func (st *streamer) truncate(ctx context.Context, t *txn, m *pglogrepl.TruncateMessage) error {
	if t == nil {
		return errors.New("cdc: Truncate message outside a transaction")
	}
	var names []string
	for _, id := range m.RelationIDs {
		rel := st.rels[id]
		if rel == nil {
			return fmt.Errorf("cdc: TRUNCATE of relation %d before its Relation message (xid %d, commit LSN %s)", id, t.xid, t.commitLSN)
		}
		if len(rel.routes) == 0 {
			continue
		}
		names = append(names, rel.name)
		st.s.metrics.truncates.WithLabelValues(rel.name).Inc()
		t.tables |= tableBit(rel.id)
		if st.snap != nil && st.snap.open > 0 {
			st.snap.touchedTable(rel)
		}
		for i := range rel.routes {
			if err := st.truncateRoute(ctx, t, rel, &rel.routes[i]); err != nil {
				return err
			}
		}
	}
	if len(names) > 0 {
		st.s.log.Info("TRUNCATE captured: bubble-up gives every root it changed one version",
			zap.Strings("tables", names), zap.Uint32("xid", t.xid), zap.String("commit_lsn", t.commitLSN.String()))
	}
	return nil
}

// truncateRoute writes the truncate record of rel to every partition of rt's topic.
func (st *streamer) truncateRoute(ctx context.Context, t *txn, rel *relation, rt *route) error {
	prefix, err := st.markerPrefix(ctx, rt.topic, st.watermarkSchema)
	if err != nil {
		return err
	}
	value := st.frame(prefix, avro.AppendWatermark(st.scratch[:0], avro.Watermark{CommitLSN: uint64(t.commitLSN), Time: t.commitTime}))
	hdrs := st.headers(st.kindTruncate, rel.nameHdr, nil, t.lsnHdr, t.traceHdr)
	if err := st.toEveryPartition(ctx, t.ack, rt.topic, truncateKey(t.commitLSN), value, hdrs); err != nil {
		return err
	}
	if rt.kind == routeRef {
		t.refs[rt.topic] = true
	} else if !slices.ContainsFunc(t.truncated, func(tt truncatedTopic) bool { return tt.topic == rt.topic }) {
		t.truncated = append(t.truncated, truncatedTopic{topic: rt.topic, root: rt.root})
	}
	return nil
}

// truncateEnds writes the truncate-end record of every change topic t truncated a table of,
// after its TxnEnds.
func (st *streamer) truncateEnds(ctx context.Context, t *txn) error {
	for _, tt := range t.truncated {
		prefix, err := st.markerPrefix(ctx, tt.topic, st.txnEndSchema)
		if err != nil {
			return err
		}
		body := avro.AppendTxnEnd(st.scratch[:0], avro.TxnEnd{
			Table: tt.root.Table, CommitLSN: uint64(t.commitLSN), Xid: t.xid, CommitTime: t.commitTime,
		})
		st.scratch = body
		hdrs := st.headers(st.kindTruncateEnd, st.tableHdr(tt.root.Table), nil, t.lsnHdr, t.traceHdr)
		if err := st.toEveryPartition(ctx, t.ack, tt.topic, truncateKey(t.commitLSN), st.frame(prefix, body), hdrs); err != nil {
			return err
		}
	}
	return nil
}

// toEveryPartition produces one record to each partition of topic, sharing key, value and
// headers (kgo only reads them).
func (st *streamer) toEveryPartition(ctx context.Context, a *ackTxn, topic string, key, value []byte, hdrs []kgo.RecordHeader) error {
	n := st.topicParts[topic]
	if n == 0 {
		return fmt.Errorf("cdc: TRUNCATE: the partition count of topic %s is unknown; this is a bug, please report it", topic)
	}
	for p := int32(0); p < n; p++ {
		st.produceAck(ctx, a, &kgo.Record{Topic: topic, Key: key, Value: value, Partition: p, Context: st.manual, Headers: hdrs})
	}
	return nil
}
