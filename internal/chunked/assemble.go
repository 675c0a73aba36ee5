package chunked

import (
	"fmt"
	"hash/crc32"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Assembler reassembles the chunk groups of the partitions its owner consumes. It is not safe
// for concurrent use: one goroutine (the poll loop) owns it.
type Assembler struct {
	hold  bool
	parts map[tp]*partState
	// OnStray, when set, is called for every chunk dropped because no group waited for it, and
	// for every group dropped unfinished because a later record of its key superseded it.
	OnStray func(topic string, partition int32, offset int64, reason string)
	now     func() time.Time
}

type tp struct {
	topic     string
	partition int32
}

type partState struct {
	groups map[string]*group // by original key
	held   []*kgo.Record     // whole records behind an unfinished group (hold mode)
}

type group struct {
	meta
	next  int
	first int64
	buf   []byte
	last  *kgo.Record // the last chunk taken
	at    time.Time   // when it was taken
	// pid is the producer id of an idempotent, non-transactional producer (cdc, the webhook
	// sink), which writes a group's chunks one after the other; -1 for a transactional one.
	pid int64
}

// NewAssembler returns an assembler. With hold, the records of a partition that come after the
// first chunk of an unfinished group are held back until every group before them is finished:
// a consumer that commits the offsets of the records it processed then never commits past a
// chunk it still needs. Without hold (a reader from the start that commits nothing, like a
// restore or `walhook tail`), whole records pass at once.
func NewAssembler(hold bool) *Assembler {
	return &Assembler{hold: hold, parts: map[tp]*partState{}, now: time.Now}
}

// Fetches rewrites the records of every partition of fs in place (see Records) and returns fs.
func (a *Assembler) Fetches(fs kgo.Fetches) kgo.Fetches {
	for i := range fs {
		for j := range fs[i].Topics {
			t := &fs[i].Topics[j]
			for k := range t.Partitions {
				p := &t.Partitions[k]
				p.Records = a.Records(t.Topic, p.Partition, p.Records)
			}
		}
	}
	return fs
}

// Records returns the records of one partition, in offset order, as the stage must see them:
// chunks replaced by the record they reassemble to (at the last chunk's position). recs is
// reused for the result.
func (a *Assembler) Records(topic string, partition int32, recs []*kgo.Record) []*kgo.Record {
	k := tp{topic, partition}
	ps := a.parts[k]
	if ps == nil {
		if !hasChunk(recs) {
			return recs // the common case: nothing chunked, nothing pending
		}
		ps = &partState{groups: map[string]*group{}}
		a.parts[k] = ps
	}
	out := recs[:0]
	if len(ps.held) > 0 {
		out = append(ps.held, nil)[:len(ps.held)] // held records come first
		ps.held = nil
	}
	for _, r := range recs {
		out = a.interrupted(ps, r, out)
		if whole := a.add(ps, r); whole != nil {
			out = append(out, whole)
		}
	}
	if len(out) <= len(recs) && cap(out) == cap(recs) {
		// The tail of recs' array still points at chunks whose bytes are now in a group's
		// buffer: let the fetch buffers they keep alive go.
		clear(recs[len(out):])
	}
	if a.hold && len(ps.groups) > 0 {
		first := ps.firstPending()
		i := len(out)
		for i > 0 && out[i-1].Offset > first {
			i--
		}
		ps.held = append([]*kgo.Record(nil), out[i:]...)
		out = out[:i]
	}
	if len(ps.groups) == 0 && len(ps.held) == 0 {
		delete(a.parts, k)
	}
	return out
}

func hasChunk(recs []*kgo.Record) bool {
	for _, r := range recs {
		if _, ok := chunkMeta(r); ok {
			return true
		}
	}
	return false
}

func (ps *partState) firstPending() int64 {
	first := int64(-1)
	for _, g := range ps.groups {
		if first < 0 || g.first < first {
			first = g.first
		}
	}
	return first
}

// interrupted gives up the groups of r's producer that r does not continue, appending a corrupt
// record for each to out: an idempotent producer writes a group's chunks one after the other,
// so any other record of it between them means the group will never finish. (Records of other
// producers may come between the chunks; a transactional producer's records of one transaction
// may too, and its aborted transactions are never read.)
func (a *Assembler) interrupted(ps *partState, r *kgo.Record, out []*kgo.Record) []*kgo.Record {
	if r.Attrs.IsTransactional() || len(ps.groups) == 0 {
		return out
	}
	own := "" // the group r is a chunk of, if any: add judges it
	if mv, ok := chunkMeta(r); ok {
		m, err := parseMeta(mv)
		if err != nil {
			return out // add reports it, and gives up its key's group
		}
		own = m.group
	}
	for key, g := range ps.groups {
		if g.group == own || g.pid < 0 || g.pid != r.ProducerID {
			continue
		}
		delete(ps.groups, key)
		out = append(out, corrupt(g.last, fmt.Errorf("%w: group %s (%d of %d chunks) was interrupted by its producer's record at offset %d",
			ErrCorrupt, g.group, g.next, g.count, r.Offset)))
	}
	return out
}

// add takes one record; it returns the record the stage sees, or nil while a group is
// unfinished or for a dropped chunk.
func (a *Assembler) add(ps *partState, r *kgo.Record) *kgo.Record {
	mv, ok := chunkMeta(r)
	if !ok {
		if g := ps.groups[string(r.Key)]; g != nil {
			a.stray(r, fmt.Sprintf("unfinished chunk group %s (%d of %d chunks) superseded by a later record of its key", g.group, g.next, g.count))
			delete(ps.groups, string(r.Key))
		}
		return r
	}
	m, err := parseMeta(mv)
	if err != nil {
		delete(ps.groups, string(r.Key)) // the group this was the last chunk of cannot finish
		if b, _, ok := baseKey(r.Key); ok {
			delete(ps.groups, string(b))
		}
		return corrupt(r, err)
	}
	base := r.Key
	final := m.index == m.count-1
	if !final {
		b, idx, ok := baseKey(r.Key)
		if !ok || idx != m.index {
			return corrupt(r, fmt.Errorf("%w: chunk %d of group %s has key %q, which does not end in its chunk suffix", ErrCorrupt, m.index, m.group, r.Key))
		}
		base = b
	}
	g := ps.groups[string(base)]
	if m.index == 0 {
		if g != nil {
			a.stray(r, fmt.Sprintf("unfinished chunk group %s (%d of %d chunks) superseded by group %s", g.group, g.next, g.count, m.group))
		}
		capacity := m.total
		if capacity > MaxValueBytes/4 { // grow as chunks arrive rather than trusting a huge header at once
			capacity = 0
		}
		g = &group{meta: m, first: r.Offset, buf: make([]byte, 0, capacity), pid: -1}
		if !r.Attrs.IsTransactional() {
			g.pid = r.ProducerID
		}
		ps.groups[string(base)] = g
	} else if g == nil || g.group != m.group || g.next != m.index {
		if !final {
			a.stray(r, fmt.Sprintf("chunk %d of %d of group %s that no group waits for", m.index, m.count, m.group))
			return nil
		}
		if g != nil && g.group == m.group {
			delete(ps.groups, string(base))
		}
		return corrupt(r, fmt.Errorf("%w: last chunk of group %s (%d chunks, %d bytes) arrived without chunks %s", ErrCorrupt, m.group, m.count, m.total, missing(g, m)))
	}
	g.buf = append(g.buf, r.Value...)
	g.next++
	g.last, g.at = r, a.now()
	if !final {
		if len(g.buf) > m.total {
			delete(ps.groups, string(base))
			return corrupt(r, fmt.Errorf("%w: group %s has more than its %d bytes after chunk %d", ErrCorrupt, m.group, m.total, m.index))
		}
		return nil
	}
	delete(ps.groups, string(base))
	if len(g.buf) != m.total {
		return corrupt(r, fmt.Errorf("%w: group %s reassembled to %d bytes, its header says %d", ErrCorrupt, m.group, len(g.buf), m.total))
	}
	if sum := crc32.Checksum(g.buf, castagnoli); sum != m.crc {
		return corrupt(r, fmt.Errorf("%w: group %s has crc32c %08x, its header says %08x", ErrCorrupt, m.group, sum, m.crc))
	}
	whole := *r
	whole.Value = g.buf
	whole.Headers = withoutMeta(r.Headers)
	with(&whole, &info{first: g.first, bytes: len(g.buf)})
	return &whole
}

func missing(g *group, m meta) string {
	if g == nil || g.group != m.group {
		return fmt.Sprintf("0-%d", m.index-1)
	}
	return fmt.Sprintf("%d-%d", g.next, m.index-1)
}

func (a *Assembler) stray(r *kgo.Record, reason string) {
	if a.OnStray != nil {
		a.OnStray(r.Topic, r.Partition, r.Offset, reason)
	}
}

// corrupt returns a copy of r that Err reports err for, with the chunk's own bytes as value.
func corrupt(r *kgo.Record, err error) *kgo.Record {
	c := *r
	with(&c, &info{err: fmt.Errorf("%s[%d]@%d: %w", r.Topic, r.Partition, r.Offset, err)})
	return &c
}

func withoutMeta(h []kgo.RecordHeader) []kgo.RecordHeader {
	out := make([]kgo.RecordHeader, 0, len(h))
	for _, x := range h {
		if x.Key != Header {
			out = append(out, x)
		}
	}
	return out
}

// Pending reports whether a group is unfinished or records are held back on any partition:
// a consumer that commits everything it polled (a transactional group session) must poll
// again before it commits.
func (a *Assembler) Pending() bool { return len(a.parts) > 0 }

// Forget drops what the assembler keeps of a partition (it was revoked: its next owner reads
// the unfinished groups again from the committed offset).
func (a *Assembler) Forget(topic string, partition int32) { delete(a.parts, tp{topic, partition}) }

// Reset drops everything (a new group session reads again from the committed offsets).
func (a *Assembler) Reset() { clear(a.parts) }

// IdleTimeout is how long a consumer waits for the next chunk of an unfinished group before it
// gives the group up (Abandon): a producer that died mid-group writes the record again when it
// restarts (cdc), which supersedes the group long before; a group nothing will finish (written
// by something else, or its chunks deleted by retention) must not hold its partition forever.
const IdleTimeout = 30 * time.Second

// Abandon gives up every group that has waited idle for its next chunk longer than idle: each
// becomes a record that Err reports as ErrCorrupt, at its last chunk's offset, and the records
// held behind the abandoned groups are released. They are returned as fetches, in offset order
// per partition; nil when nothing was abandoned.
func (a *Assembler) Abandon(idle time.Duration) kgo.Fetches {
	now := a.now()
	var fetch kgo.Fetch
	for k, ps := range a.parts {
		var out []*kgo.Record
		for key, g := range ps.groups {
			if now.Sub(g.at) <= idle {
				continue
			}
			delete(ps.groups, key)
			out = append(out, corrupt(g.last, fmt.Errorf("%w: group %s has %d of its %d chunks and no more arrived for %v",
				ErrCorrupt, g.group, g.next, g.count, now.Sub(g.at).Round(time.Second))))
		}
		if len(out) == 0 {
			continue
		}
		if len(ps.groups) == 0 {
			out = append(out, ps.held...)
			ps.held = nil
			delete(a.parts, k)
		} else if first := ps.firstPending(); a.hold {
			keep := ps.held[:0]
			for _, r := range ps.held {
				if r.Offset > first {
					keep = append(keep, r)
				} else {
					out = append(out, r)
				}
			}
			ps.held = keep
		}
		slices.SortFunc(out, func(x, y *kgo.Record) int { return int(x.Offset - y.Offset) })
		fetch.Topics = append(fetch.Topics, kgo.FetchTopic{Topic: k.topic,
			Partitions: []kgo.FetchPartition{{Partition: k.partition, Records: out}}})
	}
	if len(fetch.Topics) == 0 {
		return nil
	}
	return kgo.Fetches{fetch}
}
