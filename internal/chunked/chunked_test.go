package chunked

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func value(n int) []byte {
	v := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 1))
	for i := range v {
		v[i] = byte(r.Uint32())
	}
	return v
}

// offsets numbers recs as one partition's log from start. Records without a producer id get
// producer 1 when they are chunks, else 2: another producer's records may come between a
// group's chunks.
func offsets(start int64, recs ...*kgo.Record) []*kgo.Record {
	for i, r := range recs {
		r.Offset = start + int64(i)
		r.Topic = "t"
		if r.ProducerID == 0 {
			r.ProducerID = 2
			if IsChunk(r) {
				r.ProducerID = 1
			}
		}
	}
	return recs
}

func producer(id int64, recs []*kgo.Record) []*kgo.Record {
	for _, r := range recs {
		r.ProducerID = id
	}
	return recs
}

func TestSplitSmallRecordIsLeftAlone(t *testing.T) {
	if c := Split(&kgo.Record{Key: []byte("k"), Value: value(1000)}, MinRecordBytes); c != nil {
		t.Fatalf("a 1000-byte record split into %d chunks", len(c))
	}
}

func TestSplitReassembleRoundTrip(t *testing.T) {
	v := value(1<<20 + 12345)
	orig := &kgo.Record{Topic: "t", Key: []byte("root-1"), Value: v, Headers: []kgo.RecordHeader{{Key: "walhook-kind", Value: []byte("change")}}}
	chunks := Split(orig, MinRecordBytes)
	if len(chunks) < 17 {
		t.Fatalf("%d chunks for %d bytes at %d", len(chunks), len(v), MinRecordBytes)
	}
	for i, c := range chunks {
		if Size(c) > MinRecordBytes {
			t.Fatalf("chunk %d is %d bytes, above the limit", i, Size(c))
		}
	}
	// Split into two polls, with another key's record between the chunks.
	other := &kgo.Record{Key: []byte("root-2"), Value: []byte("small")}
	log := offsets(10, append(append(append([]*kgo.Record{}, chunks[:5]...), other), chunks[5:]...)...)
	a := NewAssembler(false)
	got := append(a.Records("t", 0, append([]*kgo.Record(nil), log[:8]...)), a.Records("t", 0, append([]*kgo.Record(nil), log[8:]...))...)
	if len(got) != 2 || got[0] != other {
		t.Fatalf("got %d records, want the small one then the whole one", len(got))
	}
	w := got[1]
	if err := Err(w); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w.Value, v) || string(w.Key) != "root-1" || len(w.Headers) != 1 || w.Headers[0].Key != "walhook-kind" {
		t.Fatalf("reassembled %d bytes key %q headers %v", len(w.Value), w.Key, w.Headers)
	}
	if w.Offset != log[len(log)-1].Offset || FirstOffset(w) != 10 || !Reassembled(w) {
		t.Fatalf("offset %d first %d", w.Offset, FirstOffset(w))
	}
	if a.Pending() {
		t.Fatal("pending after the group finished")
	}
}

func TestHoldBackBehindUnfinishedGroup(t *testing.T) {
	chunks := Split(&kgo.Record{Key: []byte("big"), Value: value(200 << 10)}, MinRecordBytes)
	before := &kgo.Record{Key: []byte("a")}
	between := &kgo.Record{Key: []byte("b")}
	log := offsets(0, before, chunks[0], between, chunks[1], chunks[2], chunks[3])
	if len(chunks) != 4 {
		t.Fatalf("%d chunks", len(chunks))
	}
	a := NewAssembler(true)
	first := a.Records("t", 3, append([]*kgo.Record(nil), log[:4]...))
	if len(first) != 1 || first[0] != before || !a.Pending() {
		t.Fatalf("first poll gave %d records (pending %v); want only the record before the group", len(first), a.Pending())
	}
	rest := a.Records("t", 3, append([]*kgo.Record(nil), log[4:]...))
	if len(rest) != 2 || rest[0] != between || len(rest[1].Value) != 200<<10 || a.Pending() {
		t.Fatalf("second poll gave %d records; want the held one and the whole one", len(rest))
	}
}

func TestCorruptGroups(t *testing.T) {
	v := value(300 << 10)
	for name, mangle := range map[string]func([]*kgo.Record) []*kgo.Record{
		"missing chunk": func(c []*kgo.Record) []*kgo.Record { return append(c[:1:1], c[2:]...) },
		"checksum": func(c []*kgo.Record) []*kgo.Record {
			c[2].Value = append([]byte(nil), c[2].Value...)
			c[2].Value[7] ^= 1
			return c
		},
		"first chunk missing": func(c []*kgo.Record) []*kgo.Record { return c[1:] },
		"bad header": func(c []*kgo.Record) []*kgo.Record {
			last := c[len(c)-1]
			last.Headers = append(last.Headers[:len(last.Headers)-1:len(last.Headers)-1], kgo.RecordHeader{Key: Header, Value: []byte("v1 x")})
			return c
		},
	} {
		t.Run(name, func(t *testing.T) {
			a := NewAssembler(true)
			got := a.Records("t", 0, offsets(0, mangle(Split(&kgo.Record{Key: []byte("k"), Value: v}, MinRecordBytes))...))
			if len(got) != 1 {
				t.Fatalf("%d records, want the corrupt one", len(got))
			}
			if err := Err(got[0]); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Err = %v, want ErrCorrupt", err)
			}
			if a.Pending() {
				t.Fatal("a corrupt group left the partition pending")
			}
		})
	}
}

// A producer that died mid-group (cdc) writes the whole transaction again: the unfinished
// group is dropped when the new one starts, and the new one reassembles.
func TestUnfinishedGroupSupersededByRetry(t *testing.T) {
	v := value(200 << 10)
	dead := producer(1, Split(&kgo.Record{Key: []byte("k"), Value: v}, MinRecordBytes)[:2])
	again := producer(3, Split(&kgo.Record{Key: []byte("k"), Value: v}, MinRecordBytes))
	var strays int
	a := NewAssembler(true)
	a.OnStray = func(string, int32, int64, string) { strays++ }
	got := a.Records("t", 0, offsets(0, append(dead, again...)...))
	if len(got) != 1 || !bytes.Equal(got[0].Value, v) || strays != 1 || a.Pending() {
		t.Fatalf("%d records, %d strays, pending %v", len(got), strays, a.Pending())
	}
}

func TestUnassembledChunkIsAnError(t *testing.T) {
	c := Split(&kgo.Record{Key: []byte("k"), Value: value(200 << 10)}, MinRecordBytes)
	if err := Err(c[0]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Err of a raw chunk: %v", err)
	}
	if err := Err(&kgo.Record{Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
}

func TestPartitionerPlacesChunksByOriginalKey(t *testing.T) {
	p := Partitioner(kgo.StickyKeyPartitioner(nil)).ForTopic("t")
	for i := range 50 {
		key := []byte{byte(i), 'k', byte(i * 7)}
		want := p.Partition(&kgo.Record{Key: key}, 12)
		for j, c := range Split(&kgo.Record{Key: key, Value: value(300 << 10)}, MinRecordBytes) {
			if got := p.Partition(c, 12); got != want {
				t.Fatalf("key %q chunk %d: partition %d, want %d", key, j, got, want)
			}
		}
	}
}

func FuzzAssembler(f *testing.F) {
	f.Add([]byte("v1 0011223344556677 0 2 10 00000000"), []byte("k"), []byte("abc"))
	f.Fuzz(func(t *testing.T, hdr, key, val []byte) {
		a := NewAssembler(true)
		r := &kgo.Record{Key: key, Value: val, Headers: []kgo.RecordHeader{{Key: Header, Value: hdr}}}
		for _, out := range a.Records("t", 0, []*kgo.Record{r}) {
			_ = Err(out)
		}
	})
}

// A group nothing finishes is given up after its idle time: a corrupt record, and the records
// held behind it are released.
func TestAbandonIdleGroup(t *testing.T) {
	now := time.Unix(1000, 0)
	a := NewAssembler(true)
	a.now = func() time.Time { return now }
	chunks := Split(&kgo.Record{Key: []byte("big"), Value: value(200 << 10)}, MinRecordBytes)
	after := &kgo.Record{Key: []byte("other")}
	if got := a.Records("t", 1, offsets(0, chunks[0], chunks[1], after)); len(got) != 0 {
		t.Fatalf("%d records before the group finished", len(got))
	}
	if fs := a.Abandon(IdleTimeout); fs != nil {
		t.Fatal("abandoned a group that is not idle")
	}
	now = now.Add(IdleTimeout + time.Second)
	got := a.Abandon(IdleTimeout).Records()
	if len(got) != 2 || !errors.Is(Err(got[0]), ErrCorrupt) || got[0].Offset != 1 || got[1] != after || a.Pending() {
		t.Fatalf("abandoned: %d records (pending %v)", len(got), a.Pending())
	}
}

// An idempotent producer writes a group's chunks one after the other: its own record between
// them gives the group up at once. (A transactional producer's records may interleave; the
// end-to-end tests in cmd/walhook read such groups from bubble-up and the compliance sink.)
func TestGroupInterruptedByItsProducer(t *testing.T) {
	chunks := Split(&kgo.Record{Key: []byte("big"), Value: value(200 << 10)}, MinRecordBytes)
	next := &kgo.Record{Key: []byte("next"), ProducerID: 1}
	a := NewAssembler(true)
	got := a.Records("t", 0, offsets(0, chunks[0], chunks[1], next))
	if len(got) != 2 || !errors.Is(Err(got[0]), ErrCorrupt) || got[1] != next || a.Pending() {
		t.Fatalf("%d records (pending %v); want the corrupt group, then the record", len(got), a.Pending())
	}
}
