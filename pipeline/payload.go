package pipeline

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/walhook/walhook/avro"
)

// tsLayout is the contract's timestamp format: UTC, milliseconds, Z.
const tsLayout = "2006-01-02T15:04:05.000Z"

// jsonValue renders one decoded column value the way the contract's payloads show it.
func jsonValue(v any) json.RawMessage { return appendValue(nil, v) }

// appendValue appends jsonValue(v) to b.
func appendValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, x)
	case int32:
		return strconv.AppendInt(b, int64(x), 10)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case float32:
		return appendFloat(b, float64(x), 32)
	case float64:
		return appendFloat(b, x, 64)
	case string:
		return appendQuoted(b, x)
	case avro.Decimal:
		if _, err := strconv.ParseFloat(string(x), 64); err != nil || !json.Valid([]byte(x)) {
			return appendQuoted(b, string(x)) // NaN, ±Infinity
		}
		return append(b, x...)
	case time.Time:
		if avro.IsInfiniteTime(x) {
			if x.UnixMicro() > 0 {
				return appendQuoted(b, "infinity")
			}
			return appendQuoted(b, "-infinity")
		}
		return append(x.UTC().AppendFormat(append(b, '"'), tsLayout), '"')
	case avro.Date:
		return appendQuoted(b, x.String())
	case avro.TimeOfDay:
		return appendQuoted(b, x.String())
	case avro.JSON:
		if len(x) == 0 || !json.Valid(x) {
			return append(b, "null"...)
		}
		return appendCompact(b, x)
	case []byte:
		b = append(b, `"\\x`...)
		b = hex.AppendEncode(b, x)
		return append(b, '"')
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, e)
		}
		return append(b, ']')
	default:
		out, err := json.Marshal(x)
		if err != nil {
			return appendQuoted(b, fmt.Sprint(x))
		}
		return append(b, out...)
	}
}

// valueBound bounds len(jsonValue(v)) for the values whose text is as long as their data, and
// is a guess for the others: rowFrom sizes a row's buffer with it.
func valueBound(v any) int {
	switch x := v.(type) {
	case string:
		return len(x) + 2
	case avro.JSON:
		return len(x)
	case []byte:
		return 2*len(x) + 4
	case avro.Decimal:
		return len(x) + 2
	}
	return 26
}

func appendFloat(b []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(strconv.AppendFloat(append(b, '"'), f, 'g', -1, bits), '"')
	}
	return strconv.AppendFloat(b, f, 'g', -1, bits)
}

// quote is a JSON string without Go's HTML escaping: a receiver compares the text it gets with
// what its database holds, and "<b>" should read as "<b>", not "\u003cb\u003e". The text is
// encoding/json's (SetEscapeHTML(false)) byte for byte.
func quote(s string) json.RawMessage { return appendQuoted(make([]byte, 0, quotedLen(s)), s) }

// appendQuoted appends quote(s) to b, growing b at most once: a large text value is copied
// once, not through an encoder's doubling buffer.
func appendQuoted(b []byte, s string) []byte {
	b = slices.Grow(b, quotedLen(s))
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(append(b, s[start:i]...), `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(append(b, s[start:i]...), '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// quotedLen is len(quote(s)).
func quotedLen(s string) int {
	n := 2
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c >= 0x20 && c != '"' && c != '\\':
				n++
			case c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			default:
				n += 6
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1, r == '\u2028', r == '\u2029':
			n += 6
		default:
			n += size
		}
		i += size
	}
	return n
}

// appendCompact appends the compact form of the valid JSON j.
func appendCompact(b, j []byte) []byte {
	buf := bytes.NewBuffer(slices.Grow(b, len(j)))
	if err := json.Compact(buf, j); err != nil {
		return append(b, "null"...)
	}
	return buf.Bytes()
}

// keyText is the text of a key value as the record key carries it: a JSON string unquoted, any
// other JSON value as written.
func keyText(raw json.RawMessage) string {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		if inner := raw[1 : len(raw)-1]; plainASCII(string(inner)) {
			return string(inner) // nothing escaped: the text between the quotes, without a decoder
		}
	}
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	}
	return string(raw)
}

// payloadBuilder renders the complete object of one root from its state.
type payloadBuilder struct {
	rm *rootModel
	// refs projects reference j of the root (rm.refs[j]) for the referenced key: the values of
	// its columns in order, nil when the row is missing.
	refs func(j int, key string) []json.RawMessage
}

// payloadPlan is what building one payload needs besides the state: the references projected
// once (the lookups report inexact references, so they must not run twice) and an upper bound
// of the payload's size, so that the payload is written into one buffer allocated once. A
// payload of a large value is as large as the value: growing an appended buffer to it would
// hold up to three copies at once.
type payloadPlan struct {
	refs  [][]json.RawMessage // per reference of the root, its projected values; nil for null
	bound int
	spots *[]valueSpot // set by snapshotValue: where appendTo wrote large values
}

// plan projects the references of s and bounds the size of its payload.
func (p payloadBuilder) plan(s *rootState) payloadPlan {
	pl := payloadPlan{refs: make([][]json.RawMessage, len(p.rm.refs)), bound: 2 + rowBound(s.Root)}
	for j, ref := range p.rm.refs {
		pl.bound += quotedLen(ref.Field) + 2 + len("null")
		if v, ok := s.Root.get(ref.Column); ok && string(v) != "null" {
			pl.refs[j] = p.refs(j, keyText(v))
		}
		for i, c := range ref.Columns {
			if i < len(pl.refs[j]) {
				pl.bound += quotedLen(c) + 2 + len(pl.refs[j][i])
			}
		}
	}
	// Every row of a table with subordinates writes each subordinate's array name and brackets.
	pl.bound += arraysBound(p.rm.root)
	for table, rows := range s.Subs {
		t := p.rm.tables[table]
		for _, r := range rows {
			pl.bound += 3 + rowBound(r) // braces, comma
			if t != nil {
				pl.bound += arraysBound(t)
			}
		}
	}
	return pl
}

// rowBound bounds what r's columns take in a payload (hidden ones included).
func rowBound(r *row) int {
	if r == nil {
		return 0
	}
	n := 0
	for i, c := range r.Cols {
		n += quotedLen(c) + 2 + len(r.Vals[i]) // colon, comma
	}
	return n
}

// arraysBound is what t's subordinate arrays take in one row of t besides their rows.
func arraysBound(t *tableModel) int {
	n := 0
	for _, c := range t.children {
		n += quotedLen(c.array) + 4 // colon, brackets, comma
	}
	return n
}

// build returns the bare object: root columns, then references, then subordinate arrays.
func (p payloadBuilder) build(key string, s *rootState) []byte {
	pl := p.plan(s)
	return p.appendTo(make([]byte, 0, pl.bound), key, s, pl)
}

// snapshotValue is the framed snapshot record value of snap (prefix, then the Avro body) with
// the bare payload of s written in place: the payload goes first, after room for the prefix and
// the head sized for pl.bound; the head, whose length field needs the payload's actual length,
// then goes right in front of it. The payload is in memory once, in the record value, and the
// large values of s (shareMin bytes or more) are pointed into it (shareValues): s must be the
// caller's own, as for encodeState.
func (p payloadBuilder) snapshotValue(prefix []byte, snap avro.Snapshot, key string, s *rootState, pl payloadPlan) []byte {
	room := len(prefix) + len(avro.AppendSnapshotHead(nil, snap, pl.bound))
	pl.spots = &[]valueSpot{}
	buf := p.appendTo(make([]byte, room, room+pl.bound), key, s, pl)
	payload := buf[room:]
	head := avro.AppendSnapshotHead(append(make([]byte, 0, room), prefix...), snap, len(payload))
	var value []byte
	if len(head) <= room {
		start := room - len(head)
		copy(buf[start:], head)
		value = buf[start:]
	} else {
		value = append(head, payload...) // the bound was short (a bug): correct, at the price of a copy
	}
	s.shareValues(value[len(value)-len(payload):], *pl.spots)
	return value
}

// valueSpot is where appendTo wrote a large value of a row of the state.
type valueSpot struct {
	table      *tableModel // the row's table; nil for the root row
	key        string      // the row's key in the state
	row        *row
	col        int
	start, end int // the value's bytes in the payload
}

// shareValues points the values at spots into payload: each row with one is replaced by a
// copy whose values are slices of payload (rows are shared with the committed state and never
// changed). The state's copy of a large value is then the snapshot record's.
func (s *rootState) shareValues(payload []byte, spots []valueSpot) {
	for i := 0; i < len(spots); {
		sp := spots[i]
		nr := &row{Cols: sp.row.Cols, Vals: slices.Clone(sp.row.Vals)}
		for ; i < len(spots) && spots[i].row == sp.row; i++ {
			nr.Vals[spots[i].col] = payload[spots[i].start:spots[i].end:spots[i].end]
		}
		switch {
		case sp.table == nil && s.Root == sp.row:
			s.Root = nr
		case sp.table != nil && s.Subs[sp.table.table][sp.key] == sp.row:
			s.Subs[sp.table.table][sp.key] = nr
		}
	}
}

// appendTo appends the bare object to b; with cap(b)-len(b) >= pl.bound it does not allocate
// for the object's bytes. With pl.spots set it notes where it wrote large values.
func (p payloadBuilder) appendTo(b []byte, key string, s *rootState, pl payloadPlan) []byte {
	w := payloadWriter{payloadBuilder: p, s: s, base: len(b), spots: pl.spots}
	b = append(b, '{')
	b, n := w.writeColumns(b, p.rm.root, s.Root, "", 0)
	for j, ref := range p.rm.refs {
		b, n = field(b, n, ref.Field)
		vals := pl.refs[j]
		if vals == nil {
			b = append(b, "null"...)
			continue
		}
		b = append(b, '{')
		m := 0
		for i, c := range ref.Columns {
			b, m = field(b, m, c)
			b = append(b, vals[i]...)
		}
		b = append(b, '}')
	}
	b = w.writeArrays(b, n, p.rm.root, key)
	return append(b, '}')
}

// payloadWriter is one appendTo.
type payloadWriter struct {
	payloadBuilder
	s     *rootState
	base  int          // where the payload starts in the buffer
	spots *[]valueSpot // nil: not noted
}

func (w payloadWriter) writeArrays(b []byte, n int, parent *tableModel, parentKey string) []byte {
	for _, child := range parent.children {
		b, n = field(b, n, child.array)
		b = append(b, '[')
		for i, r := range childrenOf(child, parentKey, w.s) {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			k, _ := r.get(child.key)
			key := keyText(k)
			var m int
			b, m = w.writeColumns(b, child, r, key, 0)
			b = w.writeArrays(b, m, child, key)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return b
}

// writeColumns writes the visible columns of r, a row of t keyed key ("" for the root row).
func (w payloadWriter) writeColumns(b []byte, t *tableModel, r *row, key string, n int) ([]byte, int) {
	for i, c := range r.Cols {
		if t.hidden[c] {
			continue
		}
		b, n = field(b, n, c)
		start := len(b)
		b = append(b, r.Vals[i]...)
		if w.spots != nil && len(r.Vals[i]) >= shareMin {
			sp := valueSpot{key: key, row: r, col: i, start: start - w.base, end: len(b) - w.base}
			if t != w.rm.root {
				sp.table = t
			}
			*w.spots = append(*w.spots, sp)
		}
	}
	return b, n
}

// childrenOf lists the visible rows of child under parentKey in order_by order (key breaks ties).
func childrenOf(child *tableModel, parentKey string, s *rootState) []*row {
	var out []*row
	for _, r := range s.Subs[child.table] {
		if pk, ok := r.get(child.parentCol); !ok || keyText(pk) != parentKey {
			continue
		}
		if child.softDelete != "" {
			if d, ok := r.get(child.softDelete); ok && string(d) == "true" {
				continue
			}
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *row) int {
		if c := compareJSON(a.mustGet(child.orderBy), b.mustGet(child.orderBy)); c != 0 {
			return c
		}
		return compareJSON(a.mustGet(child.key), b.mustGet(child.key))
	})
	return out
}

// compareJSON orders two JSON scalars: null first, numbers numerically, anything else by text
// (ISO timestamps sort correctly as text).
func compareJSON(a, b json.RawMessage) int {
	an, bn := string(a) == "null", string(b) == "null"
	switch {
	case an && bn:
		return 0
	case an:
		return -1
	case bn:
		return 1
	}
	fa, errA := strconv.ParseFloat(string(a), 64)
	fb, errB := strconv.ParseFloat(string(b), 64)
	if errA == nil && errB == nil {
		switch {
		case fa < fb:
			return -1
		case fa > fb:
			return 1
		}
		return 0
	}
	return bytes.Compare(a, b)
}

// field appends the separator and the quoted name of member n+1 and returns n+1.
func field(b []byte, n int, name string) ([]byte, int) {
	if n > 0 {
		b = append(b, ',')
	}
	b = appendQuoted(b, name)
	return append(b, ':'), n + 1
}

// oldNew wraps a payload for snapshot form old_new.
func oldNew(old, cur []byte) []byte {
	if len(old) == 0 {
		old = []byte("null")
	}
	b := make([]byte, 0, len(old)+len(cur)+16)
	b = append(b, `{"old":`...)
	b = append(b, old...)
	b = append(b, `,"new":`...)
	b = append(b, cur...)
	return append(b, '}')
}

// plainASCII reports whether s is printable ASCII without '"' or '\\': JSON text as it is.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
