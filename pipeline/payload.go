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

	"github.com/walhook/walhook/avro"
)

// tsLayout is the contract's timestamp format: UTC, milliseconds, Z.
const tsLayout = "2006-01-02T15:04:05.000Z"

// jsonValue renders one decoded column value the way the contract's payloads show it.
func jsonValue(v any) json.RawMessage { return appendJSONValue(nil, v) }

// appendJSONValue appends jsonValue(v) to dst: a row's values are rendered into one buffer
// (rowFrom), not one allocation each.
func appendJSONValue(dst []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...)
	case bool:
		return strconv.AppendBool(dst, x)
	case int32:
		return strconv.AppendInt(dst, int64(x), 10)
	case int64:
		return strconv.AppendInt(dst, x, 10)
	case int:
		return strconv.AppendInt(dst, int64(x), 10)
	case float32:
		return appendFloatJSON(dst, float64(x), 32)
	case float64:
		return appendFloatJSON(dst, x, 64)
	case string:
		return appendQuoted(dst, x)
	case avro.Decimal:
		if _, err := strconv.ParseFloat(string(x), 64); err != nil || !json.Valid([]byte(x)) {
			return appendQuoted(dst, string(x)) // NaN, ±Infinity
		}
		return append(dst, x...)
	case time.Time:
		if avro.IsInfiniteTime(x) {
			if x.UnixMicro() > 0 {
				return append(dst, `"infinity"`...)
			}
			return append(dst, `"-infinity"`...)
		}
		dst = append(dst, '"')
		dst = x.UTC().AppendFormat(dst, tsLayout)
		return append(dst, '"')
	case avro.Date:
		return appendQuoted(dst, x.String())
	case avro.TimeOfDay:
		return appendQuoted(dst, x.String())
	case avro.JSON:
		if len(x) == 0 || !json.Valid(x) {
			return append(dst, "null"...)
		}
		return append(dst, compact(x)...)
	case []byte:
		dst = append(dst, `"\\x`...)
		dst = hex.AppendEncode(dst, x)
		return append(dst, '"')
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONValue(dst, e)
		}
		return append(dst, ']')
	default:
		out, err := json.Marshal(x)
		if err != nil {
			return appendQuoted(dst, fmt.Sprint(x))
		}
		return append(dst, out...)
	}
}

func appendFloatJSON(dst []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return appendQuoted(dst, strconv.FormatFloat(f, 'g', -1, bits))
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits)
}

// quote is a JSON string without Go's HTML escaping: a receiver compares the text it gets with
// what its database holds, and "<b>" should read as "<b>", not "\u003cb\u003e".
func quote(s string) json.RawMessage { return appendQuoted(nil, s) }

// appendQuoted appends quote(s) to dst.
func appendQuoted(dst []byte, s string) []byte {
	if plainASCII(s) { // nothing to escape: the common case, without an encoder
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return append(dst, bytes.TrimSuffix(b.Bytes(), []byte("\n"))...)
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

func compact(j []byte) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, j); err != nil {
		return json.RawMessage("null")
	}
	return b.Bytes()
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

// build writes the bare object: root columns, then references, then subordinate arrays.
func (p payloadBuilder) build(key string, s *rootState) []byte {
	var b bytes.Buffer
	b.Grow(512)
	b.WriteByte('{')
	n := p.writeColumns(&b, p.rm.root, s.Root, 0)
	for j, ref := range p.rm.refs {
		n = field(&b, n, ref.Field)
		var vals []json.RawMessage
		if v, ok := s.Root.get(ref.Column); ok && string(v) != "null" {
			vals = p.refs(j, keyText(v))
		}
		if vals == nil {
			b.WriteString("null")
			continue
		}
		b.WriteByte('{')
		m := 0
		for i, c := range ref.Columns {
			m = field(&b, m, c)
			b.Write(vals[i])
		}
		b.WriteByte('}')
	}
	p.writeArrays(&b, n, p.rm.root, key, s)
	b.WriteByte('}')
	return b.Bytes()
}

func (p payloadBuilder) writeArrays(b *bytes.Buffer, n int, parent *tableModel, parentKey string, s *rootState) {
	for _, child := range parent.children {
		n = field(b, n, child.array)
		b.WriteByte('[')
		for i, r := range childrenOf(child, parentKey, s) {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('{')
			m := p.writeColumns(b, child, r, 0)
			k, _ := r.get(child.key)
			p.writeArrays(b, m, child, keyText(k), s)
			b.WriteByte('}')
		}
		b.WriteByte(']')
	}
}

func (p payloadBuilder) writeColumns(b *bytes.Buffer, t *tableModel, r *row, n int) int {
	for i, c := range r.Cols {
		if t.hidden[c] {
			continue
		}
		n = field(b, n, c)
		b.Write(r.Vals[i])
	}
	return n
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

// field writes the separator and the quoted name of member n+1 and returns n+1.
func field(b *bytes.Buffer, n int, name string) int {
	if n > 0 {
		b.WriteByte(',')
	}
	if plainASCII(name) {
		b.WriteByte('"')
		b.WriteString(name)
		b.WriteByte('"')
	} else {
		b.Write(quote(name))
	}
	b.WriteByte(':')
	return n + 1
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
