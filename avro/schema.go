package avro

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/linkedin/goavro/v2"
)

// Schema is a writer schema as framing needs it: its text, full name and
// CRC-64-AVRO fingerprint of its Parsing Canonical Form.
type Schema struct {
	JSON        string
	FullName    string // "walhook.incident.instance.Change"
	Canonical   string // Parsing Canonical Form
	Fingerprint uint64 // CRC-64-AVRO (Rabin) of Canonical
}

// ParseSchema validates a schema text with goavro (the independent
// implementation Confluent consumers resemble) and computes its fingerprint.
func ParseSchema(text string) (*Schema, error) {
	codec, err := goavro.NewCodec(text)
	if err != nil {
		return nil, fmt.Errorf("avro: invalid schema: %w", err)
	}
	var named struct{ Name, Namespace string }
	if err := json.Unmarshal([]byte(text), &named); err != nil {
		return nil, fmt.Errorf("avro: schema is not a JSON object: %w", err)
	}
	full := named.Name
	if named.Namespace != "" && !strings.Contains(full, ".") {
		full = named.Namespace + "." + full
	}
	canonical := codec.CanonicalSchema()
	return &Schema{JSON: text, FullName: full, Canonical: canonical, Fingerprint: Fingerprint64([]byte(canonical))}, nil
}

// ChangeSchema is the compiled writer schema of one version of one table's
// change records. It is immutable and safe for concurrent use.
type ChangeSchema struct {
	table     Table
	fullTable string
	cols      []colType
	schema    *Schema
}

// NewChangeSchema derives the change record schema of a table version.
func NewChangeSchema(t Table) (*ChangeSchema, error) {
	s := &ChangeSchema{table: t, fullTable: t.FullName(), cols: make([]colType, len(t.Columns))}
	for i, c := range t.Columns {
		s.cols[i] = columnType(c)
	}
	text, err := s.buildJSON()
	if err != nil {
		return nil, err
	}
	if s.schema, err = ParseSchema(text); err != nil {
		return nil, fmt.Errorf("avro: schema of table %s: %w", s.fullTable, err)
	}
	return s, nil
}

// Table returns the table version the schema was derived from.
func (s *ChangeSchema) Table() Table { return s.table }

// JSON returns the schema text.
func (s *ChangeSchema) JSON() string { return s.schema.JSON }

// Fingerprint returns the CRC-64-AVRO fingerprint of the canonical form.
func (s *ChangeSchema) Fingerprint() uint64 { return s.schema.Fingerprint }

// Schema returns the framing descriptor of the schema.
func (s *ChangeSchema) Schema() *Schema { return s.schema }

// namespace is "walhook.<schema>.<table>" with each part made a valid name.
func (s *ChangeSchema) namespace() string {
	return "walhook." + avroName(s.table.Schema) + "." + avroName(s.table.Name)
}

func (s *ChangeSchema) buildJSON() (string, error) {
	row, err := s.rowRecord()
	if err != nil {
		return "", err
	}
	nullable := func(t any) []any { return []any{"null", t} }
	change := obj{
		{"type", "record"}, {"name", "Change"}, {"namespace", s.namespace()},
		{"pg.table", s.fullTable},
		{"fields", []obj{
			{{"name", "op"}, {"type", obj{{"type", "enum"}, {"name", "Op"}, {"symbols", opSymbols[:]}}}},
			{{"name", "table"}, {"type", "string"}},
			{{"name", "commit_lsn"}, {"type", "long"}},
			{{"name", "xid"}, {"type", "long"}},
			{{"name", "commit_time"}, {"type", logical("long", "timestamp-micros")}},
			{{"name", "index"}, {"type", "long"}},
			{{"name", "before"}, {"type", nullable(row)}, {"default", nil}},
			{{"name", "after"}, {"type", nullable("Row")}, {"default", nil}},
			{{"name", "unchanged"}, {"type", obj{{"type", "array"}, {"items", "string"}}}, {"default", []any{}}},
		}},
	}
	b, err := json.Marshal(change)
	return string(b), err
}

// rowRecord is the Row record: one nullable field per column, in order.
func (s *ChangeSchema) rowRecord() (obj, error) {
	fields := make([]obj, len(s.cols))
	seen := make(map[string]string, len(s.cols))
	for i, c := range s.table.Columns {
		name := avroName(c.Name)
		if prev, dup := seen[name]; dup {
			return nil, fmt.Errorf("avro: table %s: columns %q and %q both map to Avro field name %q; rename one",
				s.fullTable, prev, c.Name, name)
		}
		seen[name] = c.Name
		f := obj{{"name", name}, {"type", []any{"null", s.cols[i].avroType()}}, {"default", nil}, {"pg.type", s.cols[i].pgType}}
		if name != c.Name {
			f = append(f, member{"pg.name", c.Name})
		}
		fields[i] = f
	}
	return obj{{"type", "record"}, {"name", "Row"}, {"fields", fields}}, nil
}

// avroName makes s a valid Avro name ([A-Za-z_][A-Za-z0-9_]*). Valid names
// are kept as they are; each invalid byte becomes "_xHH" (its hex code).
// Escaped fields keep the original in "pg.name".
func avroName(s string) string {
	if validName(s) {
		return s
	}
	if s == "" {
		return "_"
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isNameStart(c) || (i > 0 && isDigit(c)) {
			b.WriteByte(c)
			continue
		}
		b.WriteString("_x")
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

func validName(s string) bool {
	if s == "" || !isNameStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isNameStart(s[i]) && !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func isNameStart(c byte) bool { return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
func isDigit(c byte) bool     { return c >= '0' && c <= '9' }

// obj is a JSON object that keeps its member order, so schema texts (and
// their registry identity) are deterministic and readable.
type obj []member

type member struct {
	key string
	val any
}

func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		v, err := json.Marshal(m.val)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
