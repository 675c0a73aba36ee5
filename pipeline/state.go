package pipeline

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"

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
// value from prev.
func rowFrom(img *avro.Row, unchanged []string, prev *row) *row {
	r := &row{Cols: make([]string, len(img.Columns)), Vals: make([]json.RawMessage, len(img.Columns))}
	copy(r.Cols, img.Columns)
	// Every value is rendered into one buffer and sliced from it (capacity capped, so that no
	// value can grow into the next): one allocation per row instead of one per value. A value
	// rendered after the buffer grew lives in the new one; the earlier ones keep the old.
	buf := make([]byte, 0, 16*len(img.Columns))
	for i, c := range img.Columns {
		if len(unchanged) > 0 && contains(unchanged, c) {
			if v, ok := prev.get(c); ok {
				r.Vals[i] = v
				continue
			}
		}
		start := len(buf)
		buf = appendJSONValue(buf, img.Values[i])
		r.Vals[i] = buf[start:len(buf):len(buf)]
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

func encodeState(s *rootState) ([]byte, error) {
	b, err := appendState(make([]byte, 0, 512), s)
	if err != nil {
		return nil, fmt.Errorf("encode root state: %w", err)
	}
	return b, nil
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
