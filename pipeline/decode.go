package pipeline

import (
	"context"
	"fmt"
	"github.com/walhook/walhook/internal/chunked"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/avro"
)

// Header names CDC sets on every record.
const (
	headerKind  = "walhook-kind"
	headerTable = "walhook-table"
	headerOp    = "walhook-op"
	headerLSN   = "walhook-lsn"
)

// Header names of snapshot records.
const (
	headerEventType = "walhook-event-type"
	headerVersion   = "walhook-version"
	headerTenant    = "walhook-tenant"
)

const opDelete = avro.OpDelete

type recordKind uint8

const (
	kindChange recordKind = iota + 1
	kindTxnEnd
	kindWatermark
	// kindTruncate: a reference table was truncated (TRUNCATE) at the record's commit LSN. The
	// record is a Watermark body with header walhook-kind: truncate, key
	// "walhook.truncate.<commit LSN>" (distinct, so compaction keeps every one), written to every
	// partition of the reference topic after the records of earlier transactions (doc.go
	// "Truncation").
	kindTruncate
	// kindTruncateEnd: the end of a transaction that truncated a table of a root, on every
	// partition of the root's change topic after the transaction's TxnEnds: a TxnEnd body of the
	// root table with an empty root key, header walhook-kind: truncate-end (truncate.go). On a
	// change topic a kindTruncate names the truncated table in its walhook-table header.
	kindTruncateEnd
)

// input is one decoded record of a change or reference topic.
type input struct {
	kind      recordKind
	change    *avro.Change
	txnEnd    avro.TxnEnd
	snapEnd   bool           // a TxnEnd of an initial-snapshot chunk (walhook-op: read): the root is read
	watermark avro.Watermark // also the body of a truncation (kindTruncate)
}

// decoder decodes framed change records and markers. It caches compiled change decoders by writer
// schema; it is not safe for concurrent use (each goroutine has its own).
type decoder struct {
	reg     avro.Registry
	changes map[string]*avro.ChangeDecoder
}

func newDecoder(reg avro.Registry) *decoder {
	return &decoder{reg: reg, changes: map[string]*avro.ChangeDecoder{}}
}

func header(rec *kgo.Record, name string) string {
	for _, h := range rec.Headers {
		if h.Key == name {
			return string(h.Value)
		}
	}
	return ""
}

func (d *decoder) decode(ctx context.Context, rec *kgo.Record) (input, error) {
	if err := chunked.Err(rec); err != nil {
		return input{}, fmt.Errorf("reassemble record: %w", err)
	}
	schemaJSON, body, err := d.reg.Resolve(ctx, rec.Value)
	if err != nil {
		return input{}, fmt.Errorf("resolve writer schema: %w", err)
	}
	switch kind := header(rec, headerKind); kind {
	case "txn-end":
		m, err := avro.DecodeTxnEnd(body)
		return input{kind: kindTxnEnd, txnEnd: m, snapEnd: header(rec, headerOp) == "read"}, err
	case "watermark":
		m, err := avro.DecodeWatermark(body)
		return input{kind: kindWatermark, watermark: m}, err
	case "truncate":
		m, err := avro.DecodeWatermark(body)
		return input{kind: kindTruncate, watermark: m}, err
	case "truncate-end":
		m, err := avro.DecodeTxnEnd(body)
		return input{kind: kindTruncateEnd, txnEnd: m}, err
	case "change", "":
		cd := d.changes[schemaJSON]
		if cd == nil {
			if cd, err = avro.NewChangeDecoder(schemaJSON); err != nil {
				return input{}, fmt.Errorf("compile change decoder for table %s: %w", header(rec, headerTable), err)
			}
			d.changes[schemaJSON] = cd
		}
		// Shared: the values are rendered into the state at once (rowFrom), so a large text
		// value is copied from the record once.
		c, err := cd.DecodeShared(body)
		if err != nil {
			return input{}, fmt.Errorf("decode change of table %s at LSN %s: %w", header(rec, headerTable), header(rec, headerLSN), err)
		}
		return input{kind: kindChange, change: c}, nil
	default:
		return input{}, fmt.Errorf("unknown %s header %q: this stage reads change, txn-end, watermark, truncate and truncate-end records", headerKind, kind)
	}
}
