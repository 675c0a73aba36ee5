package compliance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/linkedin/goavro/v2"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
)

// kind is the Avro shape a value takes.
type kind uint8

const (
	kString    kind = iota // text, enums, numeric, json, anything unknown
	kInt                   // int2, int4
	kLong                  // int8, oid
	kFloat                 // float4
	kDouble                // float8
	kBool                  // bool
	kTimestamp             // timestamptz: long timestamp-millis
	kDate                  // date: int date
	kUUID                  // uuid: string uuid
	kBytes                 // bytea
	kArray                 // one-dimensional PostgreSQL array: array of ["null", elem]
	kRecord                // a reference: nested record
	kRecords               // a subordinate array: array of records
)

// node is one field of the typed snapshot: a column, a reference or a subordinate array. The
// tree is both the schema and the recipe that turns a JSON payload into goavro's native form.
type node struct {
	name     string // Avro field name
	json     string // payload member name (the column name)
	kind     kind
	pgType   string
	nullable bool
	elem     *node   // kArray: the element (always nullable)
	fields   []*node // kRecord, kRecords
	recName  string  // kRecord, kRecords: record name in the schema's namespace
	fullName string  // kRecord: namespace + "." + recName, the union branch name
	tenant   bool    // a kept tenant column, filled from the snapshot's tenant
}

// kindOf maps a PostgreSQL type to its Avro shape (see doc.go).
func kindOf(typ string, enum bool) kind {
	if enum {
		return kString
	}
	switch typ {
	case "int2", "int4":
		return kInt
	case "int8", "oid":
		return kLong
	case "float4":
		return kFloat
	case "float8":
		return kDouble
	case "bool":
		return kBool
	case "timestamptz":
		return kTimestamp
	case "date":
		return kDate
	case "uuid":
		return kUUID
	case "bytea":
		return kBytes
	}
	return kString
}

func columnNode(c column) *node {
	n := &node{name: avroName(c.Name), json: c.Name, pgType: c.Type, nullable: c.Nullable, kind: kindOf(c.Type, c.Enum)}
	if c.Elem != "" {
		n.kind = kArray
		n.elem = &node{name: "item", kind: kindOf(c.Elem, c.ElemEnum), pgType: c.Elem, nullable: true}
	}
	return n
}

// tree derives the snapshot record of root r from the table columns: root columns, references,
// subordinate arrays, with the webhook's visibility rules, except that keepTenant keeps the
// root's tenant column.
func tree(r *config.Root, ns string, cols map[string][]column, keepTenant bool) (*node, error) {
	hidden := hiddenSet(r.TenantColumn, softDelete(r.SoftDeleteColumn), "", r.Exclude)
	root := &node{name: "snapshot", kind: kRecord, recName: "Snapshot", fullName: ns + ".Snapshot"}
	for _, c := range cols[r.Table] {
		switch {
		case c.Name == r.TenantColumn && keepTenant:
			n := columnNode(c)
			n.tenant = true
			root.fields = append(root.fields, n)
		case !hidden[c.Name]:
			root.fields = append(root.fields, columnNode(c))
		}
	}
	for _, ref := range r.References {
		n := &node{name: avroName(ref.Field), json: ref.Field, kind: kRecord, nullable: true, recName: avroName(ref.Field) + "_ref"}
		n.fullName = ns + "." + n.recName
		for _, name := range ref.Columns {
			i := slices.IndexFunc(cols[ref.Table], func(c column) bool { return c.Name == name })
			if i < 0 {
				return nil, fmt.Errorf("compliance: reference %s of root %s projects column %q, which table %s lacks; fix model.roots[].references[].columns",
					ref.Field, r.Table, name, ref.Table)
			}
			n.fields = append(n.fields, columnNode(cols[ref.Table][i]))
		}
		root.fields = append(root.fields, n)
	}
	root.fields = append(root.fields, subordinates(r.Subordinates, "", cols)...)
	return root, checkNames(root)
}

func subordinates(subs []config.Subordinate, path string, cols map[string][]column) []*node {
	var out []*node
	for i := range subs {
		s := &subs[i]
		n := &node{name: avroName(s.Array), json: s.Array, kind: kRecords, recName: path + avroName(s.Array) + "_item"}
		hidden := hiddenSet(s.TenantColumn, softDelete(s.SoftDeleteColumn), s.ParentColumn, s.Exclude)
		for _, c := range cols[s.Table] {
			if !hidden[c.Name] {
				n.fields = append(n.fields, columnNode(c))
			}
		}
		n.fields = append(n.fields, subordinates(s.Subordinates, n.recName+"_", cols)...)
		out = append(out, n)
	}
	return out
}

// hiddenSet mirrors the pipeline's: columns never in a payload.
func hiddenSet(tenant, softDelete, parent string, exclude []string) map[string]bool {
	h := map[string]bool{}
	for _, c := range append([]string{tenant, softDelete, parent}, exclude...) {
		if c != "" {
			h[c] = true
		}
	}
	return h
}

func softDelete(col string) string {
	if col == config.NoColumn {
		return ""
	}
	return col
}

// checkNames refuses two members of one record that map to the same Avro name.
func checkNames(n *node) error {
	seen := map[string]string{}
	for _, f := range n.fields {
		if prev, dup := seen[f.name]; dup {
			return fmt.Errorf("compliance: fields %q and %q of record %s both map to Avro name %q; rename one or exclude it", prev, f.json, n.recName, f.name)
		}
		seen[f.name] = f.json
		if err := checkNames(f); err != nil {
			return err
		}
	}
	return nil
}

// namespace is "walhook.compliance.<event prefix>" with every part a valid Avro name.
func namespace(eventPrefix string) string {
	parts := strings.Split(eventPrefix, ".")
	for i, p := range parts {
		parts[i] = avroName(p)
	}
	return "walhook.compliance." + strings.Join(parts, ".")
}

// schemaJSON is the writer schema of the compliance record: the version's metadata and the typed
// snapshot nested under "snapshot", so no column name can collide with a metadata field.
func schemaJSON(ns string, snap *node) (string, error) {
	s := obj{
		{"type", "record"}, {"name", "Version"}, {"namespace", ns},
		{"doc", "One version of a root as the compliance sink writes it; snapshot is the root's payload, typed."},
		{"fields", []obj{
			{{"name", "key"}, {"type", "string"}},
			{{"name", "event_type"}, {"type", "string"}},
			{{"name", "verb"}, {"type", "string"}},
			{{"name", "version"}, {"type", "long"}},
			{{"name", "commit_lsn"}, {"type", "long"}},
			{{"name", "commit_time"}, {"type", obj{{"type", "long"}, {"logicalType", "timestamp-millis"}}}},
			{{"name", "tenant"}, {"type", "string"}},
			{{"name", "snapshot"}, {"type", snap.recordType()}},
		}},
	}
	b, err := json.Marshal(s)
	return string(b), err
}

func (n *node) field() obj {
	f := obj{{"name", n.name}}
	t := n.avroType()
	if n.nullable {
		f = append(f, member{"type", []any{"null", t}}, member{"default", nil})
	} else {
		f = append(f, member{"type", t})
	}
	if n.pgType != "" {
		f = append(f, member{"pg.type", n.pgType})
	}
	if n.json != n.name {
		f = append(f, member{"pg.name", n.json})
	}
	return f
}

func (n *node) recordType() obj {
	fields := make([]obj, len(n.fields))
	for i, c := range n.fields {
		fields[i] = c.field()
	}
	return obj{{"type", "record"}, {"name", n.recName}, {"fields", fields}}
}

func (n *node) avroType() any {
	switch n.kind {
	case kInt:
		return "int"
	case kLong:
		return "long"
	case kFloat:
		return "float"
	case kDouble:
		return "double"
	case kBool:
		return "boolean"
	case kTimestamp:
		return obj{{"type", "long"}, {"logicalType", "timestamp-millis"}}
	case kDate:
		return obj{{"type", "int"}, {"logicalType", "date"}}
	case kUUID:
		return obj{{"type", "string"}, {"logicalType", "uuid"}}
	case kBytes:
		return "bytes"
	case kArray:
		return obj{{"type", "array"}, {"items", []any{"null", n.elem.avroType()}}}
	case kRecord:
		return n.recordType()
	case kRecords:
		return obj{{"type", "array"}, {"items", n.recordType()}}
	}
	return "string"
}

// branch is goavro's name of the node's type as a union member.
func (n *node) branch() string {
	switch n.kind {
	case kInt:
		return "int"
	case kLong:
		return "long"
	case kFloat:
		return "float"
	case kDouble:
		return "double"
	case kBool:
		return "boolean"
	case kTimestamp:
		return "long.timestamp-millis"
	case kDate:
		return "int.date"
	case kUUID:
		return "string.uuid"
	case kBytes:
		return "bytes"
	case kArray, kRecords:
		return "array"
	case kRecord:
		return n.fullName
	}
	return "string"
}

// rootSchema is one compiled writer schema of one root for one topic.
type rootSchema struct {
	snap   *node
	schema *avro.Schema
	codec  *goavro.Codec
}

func compile(r *config.Root, cols map[string][]column, keepTenant bool) (*rootSchema, error) {
	ns := namespace(r.EventPrefix)
	snap, err := tree(r, ns, cols, keepTenant)
	if err != nil {
		return nil, err
	}
	text, err := schemaJSON(ns, snap)
	if err != nil {
		return nil, fmt.Errorf("compliance: schema of root %s: %w", r.Table, err)
	}
	s, err := avro.ParseSchema(text)
	if err != nil {
		return nil, fmt.Errorf("compliance: schema of root %s: %w", r.Table, err)
	}
	codec, err := goavro.NewCodec(text)
	if err != nil {
		return nil, fmt.Errorf("compliance: schema of root %s: %w", r.Table, err)
	}
	return &rootSchema{snap: snap, schema: s, codec: codec}, nil
}

// avroName makes s a valid Avro name the way package avro does: each invalid byte becomes _xHH.
func avroName(s string) string {
	valid := s != ""
	for i := 0; i < len(s) && valid; i++ {
		valid = nameByte(s[i], i > 0)
	}
	if valid {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if nameByte(s[i], i > 0) {
			b.WriteByte(s[i])
		} else {
			fmt.Fprintf(&b, "_x%02x", s[i])
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

func nameByte(c byte, notFirst bool) bool {
	return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') || (notFirst && c >= '0' && c <= '9')
}

// obj is a JSON object that keeps its member order, so a schema's text (and its registry
// identity) is deterministic.
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
