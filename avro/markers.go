package avro

import (
	"fmt"
	"time"
)

// TxnEnd marks the end of one source transaction for one root: CDC writes it
// after the transaction's last change record for that root, on the same
// partition.
type TxnEnd struct {
	Table      string // root table, "incident.instance"
	RootKey    string
	CommitLSN  uint64
	Xid        uint32
	CommitTime time.Time // encoded as timestamp-micros
	Rows       int32     // rows of this transaction for this root
}

// Watermark says the reference topic it is written to has every change up
// to CommitLSN.
type Watermark struct {
	CommitLSN uint64
	Time      time.Time // encoded as timestamp-micros
}

const txnEndSchema = `{"type":"record","name":"TxnEnd","namespace":"walhook","fields":[` +
	`{"name":"table","type":"string"},` +
	`{"name":"root_key","type":"string"},` +
	`{"name":"commit_lsn","type":"long"},` +
	`{"name":"xid","type":"long"},` +
	`{"name":"commit_time","type":{"type":"long","logicalType":"timestamp-micros"}},` +
	`{"name":"rows","type":"int"}]}`

const watermarkSchema = `{"type":"record","name":"Watermark","namespace":"walhook","fields":[` +
	`{"name":"commit_lsn","type":"long"},` +
	`{"name":"time","type":{"type":"long","logicalType":"timestamp-micros"}}]}`

// TxnEndSchema is the schema text of TxnEnd records.
func TxnEndSchema() string { return txnEndSchema }

// WatermarkSchema is the schema text of Watermark records.
func WatermarkSchema() string { return watermarkSchema }

// AppendTxnEnd appends the Avro body of m.
func AppendTxnEnd(dst []byte, m TxnEnd) []byte {
	dst = appendString(dst, m.Table)
	dst = appendString(dst, m.RootKey)
	dst = appendLong(dst, int64(m.CommitLSN))
	dst = appendLong(dst, int64(m.Xid))
	dst = appendLong(dst, m.CommitTime.UnixMicro())
	return appendInt(dst, m.Rows)
}

// AppendWatermark appends the Avro body of m.
func AppendWatermark(dst []byte, m Watermark) []byte {
	dst = appendLong(dst, int64(m.CommitLSN))
	return appendLong(dst, m.Time.UnixMicro())
}

// DecodeTxnEnd decodes a body written by AppendTxnEnd.
func DecodeTxnEnd(body []byte) (TxnEnd, error) {
	r := reader{buf: body}
	m := TxnEnd{Table: r.string(), RootKey: r.string(), CommitLSN: uint64(r.long())}
	m.Xid = uint32(r.long())
	m.CommitTime = microsToTime(r.long())
	m.Rows = r.int()
	if err := r.finish(); err != nil {
		return TxnEnd{}, fmt.Errorf("avro: decoding TxnEnd: %w", err)
	}
	return m, nil
}

// DecodeWatermark decodes a body written by AppendWatermark.
func DecodeWatermark(body []byte) (Watermark, error) {
	r := reader{buf: body}
	m := Watermark{CommitLSN: uint64(r.long()), Time: microsToTime(r.long())}
	if err := r.finish(); err != nil {
		return Watermark{}, fmt.Errorf("avro: decoding Watermark: %w", err)
	}
	return m, nil
}

func microsToTime(us int64) time.Time { return time.UnixMicro(us).UTC() }
