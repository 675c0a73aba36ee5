package avro

import (
	"fmt"
	"strconv"
	"time"
)

// Snapshot is one versioned snapshot of a root object, as the bubble-up stage writes it to the
// root's snapshot topic (keyed by Key) and the webhook and compliance sinks read it.
type Snapshot struct {
	RootType    string // the root table, "incident.instance"
	EventPrefix string // "incident.instance"
	Key         string // text of the root's key value, "134"
	Tenant      string // text of the root's tenant column; "" when the root has none
	EventType   string // "incident_instance_updated"
	Verb        Verb
	Version     int64     // 1, 2, 3… per root, no gap and no repeat
	CommitLSN   uint64    // commit LSN of the source transaction
	CommitTime  time.Time // encoded as timestamp-micros
	// Payload is the exact JSON body the webhook sends in the bare form; for an old_new root it is
	// {"old": previous or null, "new": current}.
	Payload []byte
}

// Verb is what happened to a root in one source transaction. Its numeric value minus one is the
// Avro enum index, so the order of the constants is part of the wire format.
type Verb uint8

// The verbs of the contract.
const (
	VerbCreated Verb = iota + 1
	VerbUpdated
	VerbDeleted
)

var verbSymbols = [...]string{"created", "updated", "deleted"}

func (v Verb) valid() bool { return v >= VerbCreated && v <= VerbDeleted }

func (v Verb) String() string {
	if !v.valid() {
		return "verb(" + strconv.Itoa(int(v)) + ")"
	}
	return verbSymbols[v-1]
}

const snapshotSchema = `{"type":"record","name":"Snapshot","namespace":"walhook","fields":[` +
	`{"name":"root_type","type":"string"},` +
	`{"name":"event_prefix","type":"string"},` +
	`{"name":"key","type":"string"},` +
	`{"name":"tenant","type":"string"},` +
	`{"name":"event_type","type":"string"},` +
	`{"name":"verb","type":{"type":"enum","name":"Verb","symbols":["created","updated","deleted"]}},` +
	`{"name":"version","type":"long"},` +
	`{"name":"commit_lsn","type":"long"},` +
	`{"name":"commit_time","type":{"type":"long","logicalType":"timestamp-micros"}},` +
	`{"name":"payload","type":"string"}]}`

// SnapshotSchema is the schema text of Snapshot records (walhook.Snapshot).
func SnapshotSchema() string { return snapshotSchema }

// AppendSnapshot appends the Avro body of s. It does not allocate when dst has room.
func AppendSnapshot(dst []byte, s Snapshot) []byte {
	return append(AppendSnapshotHead(dst, s, len(s.Payload)), s.Payload...)
}

// AppendSnapshotHead appends the Avro body of s up to its payload's bytes: every field before
// the payload and the payload's length, payloadLen (s.Payload is not used). A writer that builds
// a large payload in place, in the buffer of the record value, writes the head in front of it
// once the payload's length is known (the payload is the schema's last field).
func AppendSnapshotHead(dst []byte, s Snapshot, payloadLen int) []byte {
	dst = appendString(dst, s.RootType)
	dst = appendString(dst, s.EventPrefix)
	dst = appendString(dst, s.Key)
	dst = appendString(dst, s.Tenant)
	dst = appendString(dst, s.EventType)
	dst = appendLong(dst, int64(s.Verb)-1)
	dst = appendLong(dst, s.Version)
	dst = appendLong(dst, int64(s.CommitLSN))
	dst = appendLong(dst, s.CommitTime.UnixMicro())
	return appendLong(dst, int64(payloadLen))
}

// DecodeSnapshot decodes a body written by AppendSnapshot. The result does not alias body.
func DecodeSnapshot(body []byte) (Snapshot, error) { return decodeSnapshot(body, false) }

// DecodeSnapshotShared decodes like DecodeSnapshot, except that the payload is body's bytes,
// not a copy: for a body that is the caller's own and as large as its payload (a record
// reassembled from chunks), so that a large snapshot is in memory once. body must not change
// while the Snapshot is in use.
func DecodeSnapshotShared(body []byte) (Snapshot, error) { return decodeSnapshot(body, true) }

func decodeSnapshot(body []byte, shared bool) (Snapshot, error) {
	r := reader{buf: body}
	s := Snapshot{RootType: r.string(), EventPrefix: r.string(), Key: r.string(), Tenant: r.string(), EventType: r.string()}
	verb := r.long()
	s.Version = r.long()
	s.CommitLSN = uint64(r.long())
	s.CommitTime = microsToTime(r.long())
	if s.Payload = r.bytes(); !shared {
		s.Payload = append([]byte(nil), s.Payload...)
	}
	if err := r.finish(); err != nil {
		return Snapshot{}, fmt.Errorf("avro: decoding Snapshot: %w", err)
	}
	if verb < 0 || verb >= int64(len(verbSymbols)) {
		return Snapshot{}, fmt.Errorf("avro: decoding Snapshot of %s key %q: verb index %d: %w", s.RootType, s.Key, verb, ErrCorrupt)
	}
	s.Verb = Verb(verb + 1)
	return s, nil
}
