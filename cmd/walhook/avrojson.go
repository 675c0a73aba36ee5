package main

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// avroJSON turns Avro binary into plain JSON, the way a person reads a record: a union as its
// value (not {"type": value}), timestamps, dates and times as ISO 8601 text, decimals as exact
// decimal numbers, json/jsonb columns embedded, bytes as base64, and PostgreSQL's column names
// (pg.name) rather than their Avro escapes. `walhook tail` prints change records, markers and
// compliance records with it. Compiled schemas are kept by their text.
type avroJSON struct {
	schemas map[string]*anode
}

func newAvroJSON() *avroJSON { return &avroJSON{schemas: map[string]*anode{}} }

// anode is one compiled schema node.
type anode struct {
	kind     string // null, boolean, int, long, float, double, bytes, string, record, enum, array, map, union, fixed
	logical  string // logicalType
	pgType   string // "pg.type" of the field the node belongs to
	scale    int    // decimal
	size     int    // fixed
	fields   []afield
	symbols  []string
	items    *anode // array items, map values
	branches []*anode
}

type afield struct {
	name string
	node *anode
}

// decode returns the JSON of body, an Avro value of the writer schema text.
func (c *avroJSON) decode(text string, body []byte) (json.RawMessage, error) {
	n := c.schemas[text]
	if n == nil {
		var raw any
		if err := json.Unmarshal([]byte(text), &raw); err != nil {
			return nil, fmt.Errorf("schema is not JSON: %w", err)
		}
		var err error
		if n, err = (&compiler{named: map[string]*anode{}}).compile(raw, "", ""); err != nil {
			return nil, fmt.Errorf("schema: %w", err)
		}
		c.schemas[text] = n
	}
	r := &abin{b: body}
	out := r.value(nil, n)
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d bytes left after the value", len(r.b))
	}
	return out, nil
}

type compiler struct {
	named map[string]*anode
}

func fullName(name, ns string) string {
	if strings.Contains(name, ".") || ns == "" {
		return name
	}
	return ns + "." + name
}

var primitives = map[string]bool{"null": true, "boolean": true, "int": true, "long": true, "float": true,
	"double": true, "bytes": true, "string": true}

func (c *compiler) compile(s any, ns, pgType string) (*anode, error) {
	switch s := s.(type) {
	case string:
		if primitives[s] {
			return &anode{kind: s, pgType: pgType}, nil
		}
		if n := c.named[fullName(s, ns)]; n != nil {
			return n, nil
		}
		if n := c.named[s]; n != nil {
			return n, nil
		}
		return nil, fmt.Errorf("unknown type %q", s)
	case []any:
		u := &anode{kind: "union"}
		for _, b := range s {
			bn, err := c.compile(b, ns, pgType)
			if err != nil {
				return nil, err
			}
			u.branches = append(u.branches, bn)
		}
		return u, nil
	case map[string]any:
		return c.complex(s, ns, pgType)
	}
	return nil, fmt.Errorf("unexpected schema %v", s)
}

func (c *compiler) complex(s map[string]any, ns, pgType string) (*anode, error) {
	if pt, ok := s["pg.type"].(string); ok {
		pgType = pt
	}
	typ, _ := s["type"].(string)
	if typ == "" { // {"type": {...}} or {"type": [...]}
		return c.compile(s["type"], ns, pgType)
	}
	n := &anode{kind: typ, pgType: pgType}
	n.logical, _ = s["logicalType"].(string)
	if scale, ok := s["scale"].(float64); ok {
		n.scale = int(scale)
	}
	name, _ := s["name"].(string)
	if space, ok := s["namespace"].(string); ok && !strings.Contains(name, ".") {
		ns = space
	}
	if name != "" {
		full := fullName(name, ns)
		c.named[full] = n
		if i := strings.LastIndexByte(full, '.'); i >= 0 {
			ns = full[:i]
		}
	}
	switch typ {
	case "record", "error":
		n.kind = "record"
		fields, _ := s["fields"].([]any)
		for _, f := range fields {
			fm, _ := f.(map[string]any)
			fname, _ := fm["name"].(string)
			if pn, ok := fm["pg.name"].(string); ok {
				fname = pn
			}
			fpg, _ := fm["pg.type"].(string)
			fn, err := c.compile(fm["type"], ns, fpg)
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", fname, err)
			}
			n.fields = append(n.fields, afield{name: fname, node: fn})
		}
	case "enum":
		for _, sym := range s["symbols"].([]any) {
			n.symbols = append(n.symbols, fmt.Sprint(sym))
		}
	case "array", "map":
		key := "items"
		if typ == "map" {
			key = "values"
		}
		items, err := c.compile(s[key], ns, pgType)
		if err != nil {
			return nil, err
		}
		n.items = items
	case "fixed":
		size, _ := s["size"].(float64)
		n.size = int(size)
	default:
		if !primitives[typ] {
			if named := c.named[fullName(typ, ns)]; named != nil {
				return named, nil
			}
			return nil, fmt.Errorf("unknown type %q", typ)
		}
	}
	return n, nil
}

// abin reads Avro binary and appends JSON; the first error stops it.
type abin struct {
	b   []byte
	err error
}

var errShort = errors.New("value ends early")

func (r *abin) long() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(errShort)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *abin) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *abin) next(n int) []byte {
	if n < 0 || n > len(r.b) {
		r.fail(errShort)
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *abin) value(out []byte, n *anode) []byte {
	if r.err != nil {
		return out
	}
	switch n.kind {
	case "null":
		return append(out, "null"...)
	case "boolean":
		b := r.next(1)
		if len(b) == 1 && b[0] != 0 {
			return append(out, "true"...)
		}
		return append(out, "false"...)
	case "int", "long":
		return appendInteger(out, n, r.long())
	case "float":
		b := r.next(4)
		if b == nil {
			return out
		}
		return appendFloat(out, float64(math.Float32frombits(binary.LittleEndian.Uint32(b))), 32)
	case "double":
		b := r.next(8)
		if b == nil {
			return out
		}
		return appendFloat(out, math.Float64frombits(binary.LittleEndian.Uint64(b)), 64)
	case "bytes", "fixed":
		var b []byte
		if n.kind == "fixed" {
			b = r.next(n.size)
		} else {
			b = r.next(int(r.long()))
		}
		if n.logical == "decimal" {
			return strconv.AppendQuote(out, decimalString(b, n.scale))
		}
		return strconv.AppendQuote(out, base64.StdEncoding.EncodeToString(b))
	case "string":
		s := r.next(int(r.long()))
		if (n.pgType == "json" || n.pgType == "jsonb") && json.Valid(s) {
			return append(out, s...)
		}
		q, _ := json.Marshal(string(s)) // a string: cannot fail
		return append(out, q...)
	case "enum":
		i := r.long()
		if i < 0 || int(i) >= len(n.symbols) {
			r.fail(fmt.Errorf("enum index %d out of range", i))
			return out
		}
		return strconv.AppendQuote(out, n.symbols[i])
	case "union":
		i := r.long()
		if i < 0 || int(i) >= len(n.branches) {
			r.fail(fmt.Errorf("union index %d out of range", i))
			return out
		}
		return r.value(out, n.branches[i])
	case "record":
		out = append(out, '{')
		for i, f := range n.fields {
			if i > 0 {
				out = append(out, ',')
			}
			out = strconv.AppendQuote(out, f.name)
			out = append(out, ':')
			out = r.value(out, f.node)
		}
		return append(out, '}')
	case "array", "map":
		open, close := byte('['), byte(']')
		if n.kind == "map" {
			open, close = '{', '}'
		}
		out = append(out, open)
		first := true
		for r.err == nil {
			count := r.long()
			if count == 0 {
				break
			}
			if count < 0 { // a negative count is followed by the block's size in bytes
				count = -count
				r.long()
			}
			for ; count > 0 && r.err == nil; count-- {
				if !first {
					out = append(out, ',')
				}
				first = false
				if n.kind == "map" {
					out = strconv.AppendQuote(out, string(r.next(int(r.long()))))
					out = append(out, ':')
				}
				out = r.value(out, n.items)
			}
		}
		return append(out, close)
	}
	r.fail(fmt.Errorf("unsupported type %s", n.kind))
	return out
}

// appendInteger writes an int or long, as text for the time logical types. PostgreSQL's
// infinities are the type's extremes (see package avro).
func appendInteger(out []byte, n *anode, v int64) []byte {
	infinite := func(max, min int64) string {
		switch v {
		case max:
			return "infinity"
		case min:
			return "-infinity"
		}
		return ""
	}
	var s string
	switch n.logical {
	case "timestamp-millis", "local-timestamp-millis":
		if s = infinite(math.MaxInt64, math.MinInt64); s == "" {
			s = time.UnixMilli(v).UTC().Format("2006-01-02T15:04:05.000") + zone(n.logical)
		}
	case "timestamp-micros", "local-timestamp-micros":
		if s = infinite(math.MaxInt64, math.MinInt64); s == "" {
			s = time.UnixMicro(v).UTC().Format("2006-01-02T15:04:05.000000") + zone(n.logical)
		}
	case "date":
		if s = infinite(math.MaxInt32, math.MinInt32); s == "" {
			s = time.Unix(v*86400, 0).UTC().Format(time.DateOnly)
		}
	case "time-millis":
		s = time.UnixMilli(v).UTC().Format("15:04:05.000")
	case "time-micros":
		if v == 86_400_000_000 { // PostgreSQL's 24:00:00
			s = "24:00:00.000000"
		} else {
			s = time.UnixMicro(v).UTC().Format("15:04:05.000000")
		}
	default:
		return strconv.AppendInt(out, v, 10)
	}
	return strconv.AppendQuote(out, s)
}

func zone(logical string) string {
	if strings.HasPrefix(logical, "local-") {
		return ""
	}
	return "Z"
}

// appendFloat writes a number; NaN and the infinities, which JSON has no number for, as text.
func appendFloat(out []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(out, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(out, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(out, `"-Infinity"`...)
	}
	return strconv.AppendFloat(out, f, 'g', -1, bits)
}

// decimalString is an Avro decimal (big-endian two's complement unscaled value) as exact text.
func decimalString(b []byte, scale int) string {
	v := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	s := v.String()
	if scale <= 0 {
		return s
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	if len(s) <= scale {
		s = strings.Repeat("0", scale-len(s)+1) + s
	}
	s = s[:len(s)-scale] + "." + s[len(s)-scale:]
	if neg {
		s = "-" + s
	}
	return s
}
