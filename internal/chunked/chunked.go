package chunked

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Header is the header of every chunk record.
const Header = "walhook-chunk"

// ErrCorrupt is wrapped by the error of a record whose chunk group cannot be reassembled: a
// chunk missing, out of order or unexpected, a size or checksum that does not match. A stage
// handles such a record like any record it cannot decode (its poison-record path).
var ErrCorrupt = errors.New("chunked: corrupt or incomplete chunk group")

// keySuffix marks the key of a non-final chunk; KeySuffixLen bytes with the index.
var keySuffix = []byte("\x00\xffchunk")

// KeySuffixLen is the length of the suffix a non-final chunk's key has after the original key.
const KeySuffixLen = 7 + 4

// MinRecordBytes is the smallest record limit chunking works with (config validates
// kafka.max_record_bytes against it).
const MinRecordBytes = 64 << 10

// MaxValueBytes bounds the total size a chunk header may announce (PostgreSQL's values are at
// most 1 GB; a row or snapshot can hold several): a corrupt header must not make a consumer
// allocate without limit.
const MaxValueBytes = 4 << 30

// recordOverhead bounds what a record batch of one record adds to the record's key, value and
// headers (batch header 61 bytes, record framing, varints), with room to spare.
const recordOverhead = 512

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Size is how many bytes r takes in a record batch of its own, at most.
func Size(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value) + recordOverhead
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value) + 10
	}
	return n
}

// Split returns the chunk records of r when Size(r) exceeds maxBytes, else nil (produce r as
// it is). The chunks share r's value memory; they keep r's topic, partition, timestamp and
// context (a manual partitioner still sees its mark).
func Split(r *kgo.Record, maxBytes int) []*kgo.Record {
	if Size(r) <= maxBytes {
		return nil
	}
	hdrBytes := 0
	for _, h := range r.Headers {
		hdrBytes += len(h.Key) + len(h.Value) + 10
	}
	const metaBytes = len(Header) + 96 // the chunk header with the largest numbers
	size := maxBytes - recordOverhead - len(r.Key) - KeySuffixLen - hdrBytes - metaBytes
	size = max(size, 4<<10)
	v := r.Value
	count := (len(v) + size - 1) / size
	group := newGroupID()
	sum := crc32.Checksum(v, castagnoli)
	out := make([]*kgo.Record, count)
	for i := range count {
		c := &kgo.Record{Topic: r.Topic, Partition: r.Partition, Timestamp: r.Timestamp, Context: r.Context,
			Value: v[i*size : min(len(v), (i+1)*size)]}
		meta := kgo.RecordHeader{Key: Header, Value: formatMeta(group, i, count, len(v), sum)}
		if i < count-1 {
			c.Key = chunkKey(r.Key, i)
			c.Headers = []kgo.RecordHeader{meta}
		} else {
			c.Key = r.Key
			c.Headers = append(r.Headers[:len(r.Headers):len(r.Headers)], meta)
		}
		out[i] = c
	}
	return out
}

func newGroupID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b[:])
}

func chunkKey(key []byte, i int) []byte {
	k := make([]byte, 0, len(key)+KeySuffixLen)
	k = append(append(k, key...), keySuffix...)
	return binary.BigEndian.AppendUint32(k, uint32(i))
}

// baseKey returns the original key of a non-final chunk's key, and whether key is one.
func baseKey(key []byte) ([]byte, int, bool) {
	if len(key) < KeySuffixLen || string(key[len(key)-KeySuffixLen:len(key)-4]) != string(keySuffix) {
		return nil, 0, false
	}
	return key[:len(key)-KeySuffixLen], int(binary.BigEndian.Uint32(key[len(key)-4:])), true
}

type meta struct {
	group        string
	index, count int
	total        int
	crc          uint32
}

func formatMeta(group string, index, count, total int, crc uint32) []byte {
	return fmt.Appendf(nil, "v1 %s %d %d %d %08x", group, index, count, total, crc)
}

func parseMeta(v []byte) (meta, error) {
	f := strings.Fields(string(v))
	if len(f) != 6 || f[0] != "v1" {
		return meta{}, fmt.Errorf("%w: header %s=%q is not \"v1 <group> <index> <count> <total> <crc32c>\"", ErrCorrupt, Header, v)
	}
	var m meta
	var err error
	var crc uint64
	m.group = f[1]
	if m.index, err = strconv.Atoi(f[2]); err == nil {
		if m.count, err = strconv.Atoi(f[3]); err == nil {
			if m.total, err = strconv.Atoi(f[4]); err == nil {
				crc, err = strconv.ParseUint(f[5], 16, 32)
			}
		}
	}
	if err != nil || m.count < 1 || m.index < 0 || m.index >= m.count || m.total < 0 || m.total > MaxValueBytes {
		return meta{}, fmt.Errorf("%w: header %s=%q is out of range", ErrCorrupt, Header, v)
	}
	m.crc = uint32(crc)
	return m, nil
}

// chunkMeta returns the chunk header of r, if it has one.
func chunkMeta(r *kgo.Record) ([]byte, bool) {
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if r.Headers[i].Key == Header {
			return r.Headers[i].Value, true
		}
	}
	return nil, false
}

// info rides on a reassembled or corrupt record's Context.
type info struct {
	err   error
	first int64 // offset of the group's first chunk
	bytes int
}

type infoKey struct{}

func with(r *kgo.Record, in *info) {
	parent := r.Context
	if parent == nil {
		parent = context.Background()
	}
	r.Context = context.WithValue(parent, infoKey{}, in)
}

func infoOf(r *kgo.Record) *info {
	if r.Context == nil {
		return nil
	}
	in, _ := r.Context.Value(infoKey{}).(*info)
	return in
}

// Err is the reassembly error of r (wrapping ErrCorrupt), nil for a whole record. A record
// that still carries a chunk header (its consumer did not reassemble) is an error too.
func Err(r *kgo.Record) error {
	if in := infoOf(r); in != nil {
		return in.err
	}
	if _, ok := chunkMeta(r); ok {
		return fmt.Errorf("%w: %s[%d]@%d is a chunk that was not reassembled", ErrCorrupt, r.Topic, r.Partition, r.Offset)
	}
	return nil
}

// FirstOffset is the offset of the first record r was reassembled from: r.Offset for a record
// that was not chunked.
func FirstOffset(r *kgo.Record) int64 {
	if in := infoOf(r); in != nil && in.err == nil {
		return in.first
	}
	return r.Offset
}

// Reassembled reports whether r was reassembled from chunks.
func Reassembled(r *kgo.Record) bool {
	in := infoOf(r)
	return in != nil && in.err == nil
}

// Partitioner wraps a partitioner so that a non-final chunk goes where its original key
// goes.
func Partitioner(inner kgo.Partitioner) kgo.Partitioner { return partitioner{inner} }

type partitioner struct{ inner kgo.Partitioner }

func (p partitioner) ForTopic(t string) kgo.TopicPartitioner {
	tp := p.inner.ForTopic(t)
	if nb, ok := tp.(kgo.TopicPartitionerOnNewBatch); ok {
		return batchPartitioner{topicPartitioner{tp}, nb}
	}
	return topicPartitioner{tp}
}

type topicPartitioner struct{ inner kgo.TopicPartitioner }

func (p topicPartitioner) RequiresConsistency(r *kgo.Record) bool {
	return p.inner.RequiresConsistency(unchunked(r))
}

func (p topicPartitioner) Partition(r *kgo.Record, n int) int {
	return p.inner.Partition(unchunked(r), n)
}

type batchPartitioner struct {
	topicPartitioner
	nb kgo.TopicPartitionerOnNewBatch
}

func (p batchPartitioner) OnNewBatch() { p.nb.OnNewBatch() }

// unchunked returns r, or for a non-final chunk a copy with its original key.
func unchunked(r *kgo.Record) *kgo.Record {
	if len(r.Headers) != 1 || r.Headers[0].Key != Header {
		return r
	}
	base, _, ok := baseKey(r.Key)
	if !ok {
		return r
	}
	c := *r
	c.Key = base
	return &c
}

// IsChunk reports whether r is a chunk record (not reassembled).
func IsChunk(r *kgo.Record) bool {
	_, ok := chunkMeta(r)
	return ok
}

// Expand returns recs with every record above maxBytes replaced by its chunks, in order.
func Expand(recs []*kgo.Record, maxBytes int) []*kgo.Record {
	var out []*kgo.Record
	for i, r := range recs {
		c := Split(r, maxBytes)
		if c == nil {
			if out != nil {
				out = append(out, r)
			}
			continue
		}
		if out == nil {
			out = append(make([]*kgo.Record, 0, len(recs)+len(c)), recs[:i]...)
		}
		out = append(out, c...)
	}
	if out == nil {
		return recs
	}
	return out
}

// Count is the number of chunks of r's group (0 when r is no chunk or its header is corrupt).
func Count(r *kgo.Record) int {
	v, ok := chunkMeta(r)
	if !ok {
		return 0
	}
	m, err := parseMeta(v)
	if err != nil {
		return 0
	}
	return m.count
}
