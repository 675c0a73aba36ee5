package catalog_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/api/apitest"
	"github.com/walhook/walhook/internal/catalog"
	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/sinks/compliance"
)

// The AsyncAPI 3.0.0 JSON Schema, from the AsyncAPI Initiative's npm package @asyncapi/specs,
// pinned by version and by the registry's integrity hash of the tarball.
const (
	specsPackage   = "@asyncapi/specs@6.11.1"
	specsIntegrity = "sha512-A3WBLqAKGoJ2+6FWFtpjBlCQ1oFCcs4GxF7zsIGvNqp/klGUHjlA3aAcZ9XMMpLGE8zPeYDz2x9FmO6DSuKraQ=="
	specsFile      = "package/schemas/3.0.0.json"
)

// twoRoots is the demo's incident and the nested candidate (docs/examples/two-roots.yaml) on a
// database with both schemas.
func twoRoots(t *testing.T) (*config.Config, map[string]map[string][]compliance.Column) {
	t.Helper()
	ctx := t.Context()
	url := pgtest.NewDatabase(t, pgtest.Start(t))
	talent, err := os.ReadFile("../../docs/examples/talent.sql")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, sql := range []string{demo.SchemaSQL, string(talent)} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	model, err := os.ReadFile("../../docs/examples/two-roots.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.ParseWith(model, "two-roots.yaml", config.Options{Base: &config.Config{
		Postgres: config.Postgres{URL: url}, Kafka: config.Kafka{Brokers: []string{"kafka-1:9092", "kafka-2:9092"}}}})
	if err != nil {
		t.Fatal(err)
	}
	cols, err := catalog.Columns(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, cols
}

// TestAsyncAPIDocumentIsValid validates the document of the two-root model against the AsyncAPI
// 3.0.0 JSON Schema the AsyncAPI Initiative publishes, and checks what that schema cannot: every
// $ref resolves, every payload schema compiles as JSON Schema 2020-12 and every Avro schema is
// the one the stages write.
func TestAsyncAPIDocumentIsValid(t *testing.T) {
	cfg, cols := twoRoots(t)
	ets, err := catalog.EventTypes(cfg, cols)
	if err != nil {
		t.Fatal(err)
	}
	topics, err := catalog.TopicSchemas(t.Context(), cfg, cols)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := catalog.AsyncAPI(cfg, "1.2.3", ets, topics)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}

	spec := asyncAPISchema(t)
	if err := spec.Validate(v); err != nil {
		t.Fatalf("the AsyncAPI document is not valid AsyncAPI 3.0.0: %v", err)
	}

	// Every local $ref points at something.
	var walk func(path string, n any)
	refs := 0
	walk = func(path string, n any) {
		switch x := n.(type) {
		case map[string]any:
			if r, ok := x["$ref"].(string); ok && strings.HasPrefix(r, "#/") && !strings.Contains(path, "/payload/schema") {
				refs++
				if resolve(doc, r) == nil {
					t.Errorf("%s: $ref %s points at nothing", path, r)
				}
			}
			for k, c := range x {
				walk(path+"/"+k, c)
			}
		case []any:
			for i, c := range x {
				walk(fmt.Sprintf("%s/%d", path, i), c)
			}
		}
	}
	walk("#", v)
	if refs < 30 {
		t.Fatalf("only %d $refs checked", refs)
	}

	channels := doc["channels"].(map[string]any)
	messages := doc["components"].(map[string]any)["messages"].(map[string]any)
	for _, et := range ets {
		for _, f := range catalog.Formats {
			m := messages[et.Type+"_"+f].(map[string]any)
			if _, err := compile(m["payload"].(catalog.Schema)["schema"]); err != nil {
				t.Errorf("%s (%s): the payload schema does not compile: %v", et.Event, f, err)
			}
			if _, err := compile(m["headers"]); err != nil {
				t.Errorf("%s: the header schema does not compile: %v", et.Event, err)
			}
		}
	}
	want := map[string]string{}
	for _, r := range cfg.Model.Roots {
		want[cfg.Kafka.SnapshotTopic(r)] = topics.Snapshot[r.Table].Schema
		want[cfg.Compliance.Log.Topic(cfg.Kafka, r)] = topics.ComplianceLog[r.Table].Schema
		want[cfg.Compliance.Latest.Topic(cfg.Kafka, r)] = topics.ComplianceLatest[r.Table].Schema
	}
	kafka := 0
	for name, c := range channels {
		addr, ok := c.(map[string]any)["address"].(string)
		if !ok {
			continue
		}
		kafka++
		if want[addr] == "" {
			t.Errorf("channel %s: topic %s is none of the model's", name, addr)
			continue
		}
		msg := messages[name].(map[string]any)
		got, _ := json.Marshal(msg["payload"].(catalog.Schema)["schema"])
		var a, b any
		_ = json.Unmarshal(got, &a)
		_ = json.Unmarshal([]byte(want[addr]), &b)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("channel %s: the Avro schema is not the one written:\n%s\n%s", name, got, want[addr])
		}
		consumer := c.(map[string]any)["x-walhook-consumer"].(map[string]any)
		if consumer["isolation.level"] != "read_committed" {
			t.Errorf("channel %s does not tell consumers to read committed: %v", name, consumer)
		}
		if msg["headers"] == nil {
			t.Errorf("channel %s: its records carry headers the document does not give", name)
		}
	}
	if kafka != len(want) || len(want) != 6 {
		t.Fatalf("%d Kafka channels, %d topics; want a snapshot, compliance and compliance latest topic per root (6)", kafka, len(want))
	}
	if got := doc["servers"].(map[string]any)["kafka"].(map[string]any)["host"]; got != "kafka-1:9092,kafka-2:9092" {
		t.Errorf("kafka server host %v", got)
	}
}

// TestEventSchemasFollowTheModel: the nested root's schemas hold what the model says and
// nothing it hides, in each form.
func TestEventSchemasFollowTheModel(t *testing.T) {
	cfg, cols := twoRoots(t)
	ets, err := catalog.EventTypes(cfg, cols)
	if err != nil {
		t.Fatal(err)
	}
	byType := map[string]catalog.EventType{}
	for _, et := range ets {
		byType[et.Type] = et
	}
	up, ok := byType["talent_candidate_updated"]
	if !ok || up.SnapshotForm != "old_new" || len(ets) != 6 {
		t.Fatalf("event types %+v", ets)
	}
	for _, tc := range []struct {
		form, body string
		valid      bool
	}{
		{"bare", `{"old": null, "new": {"id": 7, "name": "Ada", "email": null, "created_at": "2026-02-03T10:46:23.260Z", "updated_at": "2026-02-03T10:46:23.260Z",
			"projects": [{"id": 70, "title": "Engine", "started_on": "2024-01-02", "technologies": [{"id": 700, "name": "Go"}]}]}}`, true},
		{"bare", `{"id": 7, "name": "Ada"}`, false}, // an old_new root's body is {old, new}
		{"bare", `{"old": null, "new": {"id": 7, "name": "Ada", "email": null, "password_hash": "x", "created_at": "2026-02-03T10:46:23.260Z", "updated_at": "2026-02-03T10:46:23.260Z", "projects": []}}`, false},
		{"bare", `{"old": null, "new": {"id": 7, "name": "Ada", "email": null, "tenant_id": "acme", "created_at": "2026-02-03T10:46:23.260Z", "updated_at": "2026-02-03T10:46:23.260Z", "projects": []}}`, false},
		{"bare", `{"old": null, "new": {"id": 7, "name": "Ada", "email": null, "created_at": "2026-02-03 10:46:23", "updated_at": "2026-02-03T10:46:23.260Z", "projects": []}}`, false},
		{"bare", `{"old": null, "new": {"id": 7, "name": "Ada", "email": null, "created_at": "2026-02-03T10:46:23.260Z", "updated_at": "2026-02-03T10:46:23.260Z",
			"projects": [{"id": 70, "title": "Engine", "started_on": "2024-01-02", "candidate_id": 7, "technologies": []}]}}`, false},
		{"envelope", `{"event_type": "talent_candidate_updated", "payload": {"old": null, "new": {"id": 7, "name": "Ada", "email": null, "created_at": "2026-02-03T10:46:23.260Z", "updated_at": "2026-02-03T10:46:23.260Z", "projects": []}},
			"meta": {"version": 1, "sent_at": "2026-02-03T10:46:23.260Z"}}`, true},
		{"envelope", `{"event_type": "talent_candidate_created", "payload": {"old": null, "new": {"id": 7, "name": "Ada", "email": null, "created_at": "2026-02-03T10:46:23.260Z", "updated_at": "2026-02-03T10:46:23.260Z", "projects": []}},
			"meta": {"version": 1, "sent_at": "2026-02-03T10:46:23.260Z"}}`, false},
	} {
		s, err := compile(up.Schemas[tc.form])
		if err != nil {
			t.Fatal(err)
		}
		v, _ := jsonschema.UnmarshalJSON(strings.NewReader(tc.body))
		if err := s.Validate(v); (err == nil) != tc.valid {
			t.Errorf("%s %.120s: valid %v, want %v (%v)", tc.form, tc.body, err == nil, tc.valid, err)
		}
	}
}

func resolve(doc map[string]any, ref string) any {
	var n any = doc
	for _, p := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		m, ok := n.(map[string]any)
		if !ok {
			return nil
		}
		n = m[strings.ReplaceAll(strings.ReplaceAll(p, "~1", "/"), "~0", "~")]
	}
	return n
}

func compile(schema any) (*jsonschema.Schema, error) {
	raw, err := json.Marshal(schema)
	if err != nil {
		return nil, err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource("mem://schema.json", v); err != nil {
		return nil, err
	}
	return c.Compile("mem://schema.json")
}

// asyncAPISchema compiles the AsyncAPI 3.0.0 schema (fetched with npm, apitest.NPMFile).
func asyncAPISchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(apitest.NPMFile(t, specsPackage, specsIntegrity, specsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	id := v.(map[string]any)["$id"].(string)
	c := jsonschema.NewCompiler()
	if err := c.AddResource(id, v); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(id)
	if err != nil {
		t.Fatalf("compile the AsyncAPI 3.0.0 schema: %v", err)
	}
	return s
}
