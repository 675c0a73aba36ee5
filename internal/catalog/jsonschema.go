package catalog

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/sinks/compliance"
)

// SchemaDialect is the JSON Schema dialect of every schema in the catalog.
const SchemaDialect = "https://json-schema.org/draft/2020-12/schema"

// Schema is a JSON Schema as a JSON object.
type Schema = map[string]any

// EventType is one event of the model with its payload schemas.
type EventType struct {
	// Event is the subscription key, "incident.instance.updated"; Type the same with
	// underscores, as the walhook-event-type header and the envelope's event_type carry it.
	Event string `json:"event"`
	Type  string `json:"event_type"`
	// Root is the root table, "incident.instance"; Verb is created, updated or deleted.
	Root string `json:"root"`
	Verb string `json:"verb"`
	// SnapshotForm is the root's model.roots[].snapshot_form: bare or old_new.
	SnapshotForm string `json:"snapshot_form"`
	Description  string `json:"description"`
	// Schemas are the payload's schema per subscription format: "bare" (the request body of a
	// subscription with format bare: the object, or {"old","new"} for an old_new root) and
	// "envelope" ({event_type, payload, meta}).
	Schemas map[string]Schema `json:"schemas"`
}

// Formats are the subscription formats, in the order the catalog lists them.
var Formats = []string{"bare", "envelope"}

// Verbs are the events of each root, in order.
var Verbs = []string{"created", "updated", "deleted"}

// Columns reads the column facts of every root of cfg's model from PostgreSQL, by root table.
func Columns(ctx context.Context, cfg *config.Config) (map[string]map[string][]compliance.Column, error) {
	out := map[string]map[string][]compliance.Column{}
	for i := range cfg.Model.Roots {
		r := &cfg.Model.Roots[i]
		cols, err := compliance.TableColumns(ctx, cfg.Postgres.URL, r)
		if err != nil {
			return nil, fmt.Errorf("catalog: root %s: %w", r.Table, err)
		}
		out[r.Table] = cols
	}
	return out, nil
}

// EventTypes derives the event types of cfg's model from the column facts Columns read.
func EventTypes(cfg *config.Config, cols map[string]map[string][]compliance.Column) ([]EventType, error) {
	var out []EventType
	for i := range cfg.Model.Roots {
		r := &cfg.Model.Roots[i]
		object, err := RootObject(r, cols[r.Table])
		if err != nil {
			return nil, err
		}
		form := string(r.SnapshotForm)
		if form == "" {
			form = string(config.FormBare)
		}
		for _, verb := range Verbs {
			et := EventType{Event: r.EventPrefix + "." + verb, Type: strings.ReplaceAll(r.EventPrefix, ".", "_") + "_" + verb,
				Root: r.Table, Verb: verb, SnapshotForm: form, Schemas: map[string]Schema{}}
			et.Description = describe(r, verb, form)
			payload := payloadSchema(form)
			et.Schemas["bare"] = document(et.Type+" (bare)", payload, object)
			et.Schemas["envelope"] = document(et.Type+" (envelope)", envelopeSchema(et.Type, payload), object)
			out = append(out, et)
		}
	}
	return out, nil
}

func describe(r *config.Root, verb, form string) string {
	what := map[string]string{
		"created": "a row of " + r.Table + " was inserted",
		"updated": "a row of " + r.Table + ", or one of its subordinate rows, changed",
		"deleted": "a row of " + r.Table + " was soft-deleted or deleted",
	}[verb]
	d := "Fires once per source transaction in which " + what + "; the payload is the complete object after the transaction"
	if form == string(config.FormOldNew) {
		d += ", as {\"old\": the previous object or null, \"new\": the object}"
	}
	return d + "."
}

// document is a standalone schema: the payload shape with the root object in $defs.
func document(title string, payload Schema, object Schema) Schema {
	s := Schema{"$schema": SchemaDialect, "title": title}
	for k, v := range payload {
		s[k] = v
	}
	s["$defs"] = Schema{"object": object}
	return s
}

var objectRef = Schema{"$ref": "#/$defs/object"}

func payloadSchema(form string) Schema {
	if form != string(config.FormOldNew) {
		return Schema{"$ref": "#/$defs/object"}
	}
	return closedObject(map[string]any{
		"old": Schema{"anyOf": []any{objectRef, Schema{"type": "null"}}, "description": "the object before the transaction; null on created"},
		"new": objectRef,
	}, []string{"old", "new"})
}

func envelopeSchema(eventType string, payload Schema) Schema {
	return closedObject(map[string]any{
		"event_type": Schema{"const": eventType},
		"payload":    payload,
		"meta": closedObject(map[string]any{
			"version": Schema{"const": 1, "description": "the payload schema version"},
			"sent_at": timestampSchema(),
		}, []string{"version", "sent_at"}),
	}, []string{"event_type", "payload", "meta"})
}

func closedObject(props map[string]any, required []string) Schema {
	return Schema{"type": "object", "properties": props, "required": required, "additionalProperties": false}
}

// RootObject is the schema of root's bare object: its visible columns in table order, then its
// references, then its subordinate arrays, as pipeline/payload.go writes them.
func RootObject(r *config.Root, cols map[string][]compliance.Column) (Schema, error) {
	props, req, err := columnProps(r.Table, cols, hidden(r.TenantColumn, softDelete(r.SoftDeleteColumn), "", r.Exclude))
	if err != nil {
		return nil, err
	}
	for _, ref := range r.References {
		rcols := cols[ref.Table]
		if rcols == nil {
			return nil, fmt.Errorf("catalog: reference table %s has no columns (missing?)", ref.Table)
		}
		p := map[string]any{}
		for _, name := range ref.Columns {
			i := slices.IndexFunc(rcols, func(c compliance.Column) bool { return c.Name == name })
			if i < 0 {
				return nil, fmt.Errorf("catalog: reference %s of %s: column %s.%s does not exist", ref.Field, r.Table, ref.Table, name)
			}
			p[name] = columnSchema(rcols[i])
		}
		obj := closedObject(p, slices.Clone(ref.Columns))
		props[ref.Field] = Schema{"anyOf": []any{obj, Schema{"type": "null"}},
			"description": fmt.Sprintf("%s row %s points at (null when it does not exist)", ref.Table, ref.Column)}
		req = append(req, ref.Field)
	}
	if err := subordinateProps(r.Subordinates, cols, props, &req); err != nil {
		return nil, err
	}
	o := closedObject(props, req)
	o["title"] = r.Table
	return o, nil
}

func subordinateProps(subs []config.Subordinate, cols map[string][]compliance.Column, props map[string]any, req *[]string) error {
	for i := range subs {
		s := &subs[i]
		p, r, err := columnProps(s.Table, cols, hidden(s.TenantColumn, softDelete(s.SoftDeleteColumn), s.ParentColumn, s.Exclude))
		if err != nil {
			return err
		}
		if err := subordinateProps(s.Subordinates, cols, p, &r); err != nil {
			return err
		}
		item := closedObject(p, r)
		item["title"] = s.Table
		order := s.OrderBy
		if order == "" {
			order = s.Key
		}
		props[s.Array] = Schema{"type": "array", "items": item,
			"description": fmt.Sprintf("%s rows, ordered by %s (soft-deleted rows left out)", s.Table, order)}
		*req = append(*req, s.Array)
	}
	return nil
}

func columnProps(table string, cols map[string][]compliance.Column, hide map[string]bool) (map[string]any, []string, error) {
	tc := cols[table]
	if len(tc) == 0 {
		return nil, nil, fmt.Errorf("catalog: table %s has no columns (does it exist? `walhook config validate --check-db` says)", table)
	}
	props := map[string]any{}
	req := []string{}
	for _, c := range tc {
		if hide[c.Name] {
			continue
		}
		props[c.Name] = columnSchema(c)
		req = append(req, c.Name)
	}
	return props, req, nil
}

func softDelete(col string) string {
	if col == config.NoColumn {
		return ""
	}
	return col
}

func hidden(tenant, softDelete, parent string, exclude []string) map[string]bool {
	h := map[string]bool{}
	for _, c := range append([]string{tenant, softDelete, parent}, exclude...) {
		if c != "" {
			h[c] = true
		}
	}
	return h
}

// columnSchema is the JSON a column's values take in a payload (pipeline/payload.go jsonValue
// over avro's decoding), null included when the column is nullable.
func columnSchema(c compliance.Column) Schema {
	var s Schema
	if c.Elem != "" {
		s = Schema{"type": "array", "items": nullable(scalarSchema(c.Elem, c.ElemEnum))}
	} else {
		s = scalarSchema(c.Type, c.Enum)
	}
	s["description"] = "PostgreSQL " + c.Type
	if c.Nullable {
		return nullable(s)
	}
	return s
}

func nullable(s Schema) Schema {
	if t, ok := s["type"].(string); ok && len(s) <= 3 {
		c := Schema{}
		for k, v := range s {
			c[k] = v
		}
		c["type"] = []any{t, "null"}
		return c
	}
	return Schema{"anyOf": []any{s, Schema{"type": "null"}}}
}

// Patterns of the text forms of time values in payloads.
const (
	timestampPattern = `^-?\d{4,}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`
	datePattern      = `^-?\d{4,}-\d\d-\d\d$`
	timePattern      = `^\d\d:\d\d:\d\d\.\d{6}$`
	uuidPattern      = `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`
	byteaPattern     = `^\\x([0-9a-f]{2})*$`
)

func timestampSchema() Schema {
	return Schema{"type": "string", "format": "date-time", "pattern": timestampPattern}
}

func scalarSchema(typname string, enum bool) Schema {
	if enum {
		return Schema{"type": "string"}
	}
	switch typname {
	case "int2", "int4", "int8", "oid":
		return Schema{"type": "integer"}
	case "float4", "float8":
		return Schema{"anyOf": []any{Schema{"type": "number"}, Schema{"enum": []any{"NaN", "+Inf", "-Inf"}}}}
	case "numeric":
		return Schema{"anyOf": []any{Schema{"type": "number"}, Schema{"enum": []any{"NaN", "Infinity", "-Infinity"}}}}
	case "bool":
		return Schema{"type": "boolean"}
	case "timestamptz", "timestamp":
		return Schema{"anyOf": []any{timestampSchema(), Schema{"enum": []any{"infinity", "-infinity"}}}}
	case "date":
		return Schema{"anyOf": []any{Schema{"type": "string", "format": "date", "pattern": datePattern}, Schema{"enum": []any{"infinity", "-infinity"}}}}
	case "time":
		return Schema{"type": "string", "pattern": timePattern}
	case "uuid":
		return Schema{"type": "string", "format": "uuid", "pattern": uuidPattern}
	case "json", "jsonb":
		return Schema{}
	case "bytea":
		return Schema{"type": "string", "pattern": byteaPattern}
	}
	return Schema{"type": "string"}
}
