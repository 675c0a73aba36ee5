package pipeline

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/walhook/walhook/avro"
)

// row is one stored row image: column names in table order and each value already rendered as
// payload JSON, so building a payload is concatenation and the state does not depend on Avro.
type row struct {
	Cols []string          `json:"c"`
	Vals []json.RawMessage `json:"v"`
}

func (r *row) get(col string) (json.RawMessage, bool) {
	if r == nil {
		return nil, false
	}
	for i, c := range r.Cols {
		if c == col {
			return r.Vals[i], true
		}
	}
	return nil, false
}

func (r *row) mustGet(col string) json.RawMessage {
	v, ok := r.get(col)
	if !ok {
		return json.RawMessage("null")
	}
	return v
}

// rowFrom renders a decoded row image. Columns listed in unchanged (unchanged TOAST) keep their
// value from prev. The rendered values share one buffer, sized once (a large text value is
// copied once), and the column list is t's when it is the same as the last one.
func rowFrom(t *tableModel, img *avro.Row, unchanged []string, prev *row) *row {
	r := &row{Cols: t.columns(img.Columns), Vals: make([]json.RawMessage, len(img.Columns))}
	size := 0
	for _, v := range img.Values {
		size += valueBound(v)
	}
	buf := make([]byte, 0, size)
	for i, c := range img.Columns {
		if len(unchanged) > 0 && contains(unchanged, c) {
			if v, ok := prev.get(c); ok {
				r.Vals[i] = v
				continue
			}
		}
		start := len(buf)
		buf = appendValue(buf, img.Values[i])
		r.Vals[i] = buf[start:len(buf):len(buf)] // a later append that grows buf leaves it be
	}
	return r
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// rootState is everything the stage knows about one root. It is stored in Pebble and written,
// whole, to the changelog topic as JSON.
type rootState struct {
	// Version is the last emitted version; 0 before the first snapshot.
	Version int64 `json:"version"`
	// Applied is the commit LSN of the last source transaction fully applied.
	Applied uint64 `json:"applied"`
	// Root is the root row; nil while only subordinate rows are known.
	Root *row `json:"root,omitempty"`
	// Gone is set once the root row was hard-deleted (Root keeps its last image).
	Gone bool `json:"gone,omitempty"`
	// Subs holds subordinate rows of every depth: table → row key text → row.
	Subs map[string]map[string]*row `json:"subs,omitempty"`
	// Pending is the source transaction whose rows are applied but whose end marker has not come.
	Pending *pending `json:"pending,omitempty"`
	// Last is the last emitted bare payload, kept only for old_new roots.
	Last json.RawMessage `json:"last,omitempty"`
	// Partial is set while the state may lack rows of the root: its first change was not the
	// root row's insert or read (a root that existed before the slot, changed before its
	// initial-snapshot chunk was read). Such a root emits nothing until the transaction end of
	// its snapshot read (or the root row's insert or read) clears it.
	Partial bool `json:"partial,omitempty"`
}

// clone copies s so that applying changes to the copy leaves s as it was. Rows are shared: once
// built they are never changed (applyRow and rowFrom replace them); the maps and the pending
// transaction are copied.
func (s *rootState) clone() *rootState {
	c := *s
	if s.Subs != nil {
		c.Subs = make(map[string]map[string]*row, len(s.Subs))
		for t, rows := range s.Subs {
			c.Subs[t] = maps.Clone(rows)
		}
	}
	if s.Pending != nil {
		p := *s.Pending
		c.Pending = &p
	}
	return &c
}

// fresh reports whether nothing is known of the root yet.
func (s *rootState) fresh() bool {
	return s.Root == nil && !s.Gone && len(s.Subs) == 0 && s.Version == 0 && s.Applied == 0 && s.Pending == nil && !s.Partial
}

// pending says what the open source transaction did to the root so far.
type pending struct {
	LSN            uint64 `json:"lsn"`
	Created        bool   `json:"created,omitempty"`
	HardDeleted    bool   `json:"hard_deleted,omitempty"`
	WasSoftDeleted bool   `json:"was_soft_deleted,omitempty"`
	Existed        bool   `json:"existed,omitempty"`
}

// encodeState returns the JSON of s that Pebble and the changelog keep, written into one
// buffer allocated once (a state with a large value is not grown through an encoder's doubling
// buffer), and points the large values of s (shareMin bytes or more) into that buffer, so that
// the state and its encoding share one copy of them. s must be the caller's own (an overlay
// state): its rows are replaced, never changed (rows are shared with the committed state).
// The JSON is what encoding/json reads into rootState; values are written as they are (json.Marshal
// would write "<" in a value as "\u003c").
func encodeState(s *rootState) ([]byte, error) {
	tables := slices.Sorted(maps.Keys(s.Subs))
	keys := make([][]string, len(tables))
	for i, t := range tables {
		keys[i] = slices.Sorted(maps.Keys(s.Subs[t]))
	}
	b := make([]byte, 0, stateBound(s, tables, keys))
	b = append(b, `{"version":`...)
	b = strconv.AppendInt(b, s.Version, 10)
	b = append(b, `,"applied":`...)
	b = strconv.AppendUint(b, s.Applied, 10)
	if s.Root != nil {
		b = append(b, `,"root":`...)
		var err error
		if b, s.Root, err = appendRow(b, s.Root); err != nil {
			return nil, fmt.Errorf("encode root state: root: %w", err)
		}
	}
	if s.Gone {
		b = append(b, `,"gone":true`...)
	}
	if len(s.Subs) > 0 {
		b = append(b, `,"subs":{`...)
		for i, t := range tables {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(appendQuoted(b, t), ':')
			rows := s.Subs[t]
			if rows == nil {
				b = append(b, "null"...) // as encoding/json writes a nil map
				continue
			}
			b = append(b, '{')
			for j, k := range keys[i] {
				if j > 0 {
					b = append(b, ',')
				}
				b = append(appendQuoted(b, k), ':')
				var err error
				if b, rows[k], err = appendRow(b, rows[k]); err != nil {
					return nil, fmt.Errorf("encode root state: %s %s: %w", t, k, err)
				}
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	if p := s.Pending; p != nil {
		b = append(b, `,"pending":{"lsn":`...)
		b = strconv.AppendUint(b, p.LSN, 10)
		for _, f := range []struct {
			name string
			set  bool
		}{{"created", p.Created}, {"hard_deleted", p.HardDeleted}, {"was_soft_deleted", p.WasSoftDeleted}, {"existed", p.Existed}} {
			if f.set {
				b = append(append(append(b, `,"`...), f.name...), `":true`...)
			}
		}
		b = append(b, '}')
	}
	if len(s.Last) > 0 {
		b = append(b, `,"last":`...)
		start := len(b)
		b = append(b, s.Last...)
		if len(s.Last) >= shareMin {
			s.Last = b[start:len(b):len(b)]
		}
	}
	if s.Partial {
		b = append(b, `,"partial":true`...)
	}
	return append(b, '}'), nil
}

// shareMin is the size from which encodeState points a state's value into the encoding.
const shareMin = 4 << 10

// appendRow appends the JSON of r and returns r, or a copy of r whose large values point into
// b when b had room for them (the two are equal).
func appendRow(b []byte, r *row) ([]byte, *row, error) {
	if r == nil {
		return append(b, "null"...), nil, nil
	}
	b = append(b, `{"c":[`...)
	for i, c := range r.Cols {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendQuoted(b, c)
	}
	b = append(b, `],"v":[`...)
	shared := r
	for i, v := range r.Vals {
		if i > 0 {
			b = append(b, ',')
		}
		if v == nil {
			b = append(b, "null"...) // as encoding/json writes a nil RawMessage
			continue
		}
		if len(v) == 0 { // no JSON: written as it is, the state would not decode at restore
			return b, r, fmt.Errorf("column %s: empty value", r.Cols[i])
		}
		start, before := len(b), cap(b)
		b = append(b, v...)
		if len(v) >= shareMin && cap(b) == before {
			if shared == r {
				shared = &row{Cols: r.Cols, Vals: slices.Clone(r.Vals)}
			}
			shared.Vals[i] = b[start:len(b):len(b)]
		}
	}
	return append(b, ']', '}'), shared, nil
}

// stateBound bounds the length of encodeState's JSON of s.
func stateBound(s *rootState, tables []string, keys [][]string) int {
	const numbers = 2 * 20 // version, applied
	const pending = 128    // lsn and flags
	n := len(`{"version":,"applied":,"root":,"gone":true,"subs":{},"last":,"partial":true}`) + numbers + pending
	n += rowJSONBound(s.Root) + len(s.Last)
	for i, t := range tables {
		n += quotedLen(t) + 3
		for _, k := range keys[i] {
			n += quotedLen(k) + 2 + rowJSONBound(s.Subs[t][k])
		}
	}
	return n
}

func rowJSONBound(r *row) int {
	n := len(`{"c":[],"v":[]}`) + 4
	if r == nil {
		return n
	}
	for i, c := range r.Cols {
		n += quotedLen(c) + 1 + max(len(r.Vals[i]), 4) + 1
	}
	return n
}

func decodeState(b []byte) (*rootState, error) {
	s := &rootState{}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("corrupt root state: %w", err)
	}
	return s, nil
}

// softDeleted reports whether the root row's soft-delete column is true.
func (s *rootState) softDeleted(t *tableModel) bool {
	if t.softDelete == "" || s.Root == nil {
		return false
	}
	v, ok := s.Root.get(t.softDelete)
	return ok && string(v) == "true"
}

// stateKey is the Pebble key of a root: 'S', root index, input partition, root key. Grouping by
// (root, partition) lets a partition's state be dropped and restored as one range.
func stateKey(rootIndex int, partition int32, key string) []byte {
	b := statePrefix(rootIndex, partition)
	return append(b, key...)
}

func statePrefix(rootIndex int, partition int32) []byte {
	b := make([]byte, 0, 16)
	b = append(b, 'S')
	b = binary.BigEndian.AppendUint16(b, uint16(rootIndex))
	return binary.BigEndian.AppendUint32(b, uint32(partition))
}

// prefixEnd is the first key after every key starting with prefix.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// changelogKey is the changelog record key of a root: event prefix, NUL, root key. The event
// prefix keeps roots of different types apart in the shared changelog partition.
func changelogKey(eventPrefix, key string) []byte {
	b := make([]byte, 0, len(eventPrefix)+1+len(key))
	b = append(b, eventPrefix...)
	b = append(b, 0)
	return append(b, key...)
}
