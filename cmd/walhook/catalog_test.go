package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/api/apitest"
	"github.com/walhook/walhook/internal/kafkaconn"
	"github.com/walhook/walhook/internal/kafkatest"
	"github.com/walhook/walhook/sinks/webhook/webhooktest"
)

// asyncDoc is an AsyncAPI document as `walhook catalog export` writes it, with its schemas
// compiled on first use.
type asyncDoc struct {
	t    *testing.T
	raw  map[string]any
	mu   sync.Mutex
	json map[string]*jsonschema.Schema
}

func (d *asyncDoc) message(name string) map[string]any {
	d.t.Helper()
	m, ok := d.raw["components"].(map[string]any)["messages"].(map[string]any)[name].(map[string]any)
	if !ok {
		d.t.Fatalf("the AsyncAPI document has no message %s", name)
	}
	return m
}

// schema compiles a JSON Schema of message name: "payload" or "headers".
func (d *asyncDoc) schema(name, part string) *jsonschema.Schema {
	d.t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.json[name+"/"+part]; s != nil {
		return s
	}
	doc := d.message(name)[part]
	if part == "payload" {
		doc = doc.(map[string]any)["schema"]
	}
	s, err := apitest.CompileSchema(doc, name+"-"+part)
	if err != nil {
		d.t.Fatalf("compile %s of message %s: %v", part, name, err)
	}
	d.json[name+"/"+part] = s
	return s
}

// topicMessage is the message of the Kafka channel whose address is topic.
func (d *asyncDoc) topicMessage(topic string) (string, map[string]any) {
	d.t.Helper()
	for _, ch := range d.raw["channels"].(map[string]any) {
		c := ch.(map[string]any)
		if c["address"] == topic {
			ref := c["messages"].(map[string]any)["record"].(map[string]any)["$ref"].(string)
			name := strings.TrimPrefix(ref, "#/components/messages/")
			return name, d.message(name)
		}
	}
	d.t.Fatalf("the AsyncAPI document has no channel for topic %s", topic)
	return "", nil
}

// kafkaTopics lists the addresses of the document's Kafka channels.
func (d *asyncDoc) kafkaTopics() []string {
	var out []string
	for _, ch := range d.raw["channels"].(map[string]any) {
		if a, ok := ch.(map[string]any)["address"].(string); ok {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

func headerDoc(h map[string][]string) []byte {
	m := map[string]string{}
	for k, v := range h {
		m[strings.ToLower(k)] = v[0]
	}
	b, _ := json.Marshal(m)
	return b
}

// TestCatalogAgainstRealEvents runs walhook dev, delivering to a real HTTPS receiver, on the two-root model (the demo's incident, bare,
// and the nested candidate → projects → technologies, old_new) and checks what really went out
// against the catalog: every webhook body of every event in both formats against its JSON
// Schema in the AsyncAPI document `walhook catalog export` wrote (and the same schema served at
// /v1/event-types), every webhook's headers against the message's header schema and its
// signature; and every record of every snapshot and compliance topic, read from Kafka with
// read_committed, against the Avro schema of its channel (the schema it was written with must be
// that schema, and the value must decode with it to the last byte), its headers, and, for
// snapshots, its payload against the event's bare schema.
func TestCatalogAgainstRealEvents(t *testing.T) {
	requirePostgres(t)
	model, err := os.ReadFile("../../docs/examples/two-roots.yaml")
	if err != nil {
		t.Fatal(err)
	}
	schemaFile := filepath.Join(t.TempDir(), "talent.sql")
	if err := os.WriteFile(schemaFile, []byte(talentSQL), 0o600); err != nil {
		t.Fatal(err)
	}
	// A real HTTPS receiver; walhook dev trusts its certificate through SSL_CERT_FILE, which Go
	// reads for the system's roots.
	recv := webhooktest.StartTLS(t)
	certFile := filepath.Join(t.TempDir(), "receiver.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: recv.Server().Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SSL_CERT_FILE", certFile)
	d := startDev(t, filepath.Join(t.TempDir(), ".walhook"), string(model), "--schema", schemaFile)
	base, key := d.env["WALHOOK_API_URL"], d.env["WALHOOK_API_KEY"]
	waitAPI(t, base)

	wantEvents := []string{"incident.instance.created", "incident.instance.updated", "incident.instance.deleted",
		"talent.candidate.created", "talent.candidate.updated", "talent.candidate.deleted"}
	// A subscription of tenant acme per event and format, each to its own path of a real receiver.
	if !strings.HasPrefix(recv.URL(), "https://") {
		t.Fatalf("the receiver is at %s", recv.URL())
	}
	apiCall(t, base, key, "POST", "/v1/applications", map[string]any{"name": "catalog-check"})
	secrets := map[string]string{}
	for _, ev := range wantEvents {
		for _, f := range []string{"bare", "envelope"} {
			var sub struct{ Secret string }
			path := "/" + ev + "/" + f
			_ = json.Unmarshal(apiCall(t, base, key, "POST", "/v1/subscriptions", map[string]any{"application": "catalog-check", "tenant": "acme",
				"event": ev, "url": recv.URL() + path, "format": f}), &sub)
			secrets[path] = sub.Secret
		}
	}

	// Both roots through every event, nulls and empty arrays included; each statement is its own
	// source transaction, so each is one version. Subscriptions are loaded on NOTIFY: the first
	// statement waits until the sink has them (a webhook to a path proves it).
	execSQL(t, d.env["WALHOOK_PG_URL"], story[0])
	probe := 1000
	kafkatest.Eventually(t, 30*time.Second, func() error {
		probe++
		execSQL(t, d.env["WALHOOK_PG_URL"], fmt.Sprintf(`insert into talent.candidate (id, name, tenant_id) values (%d, 'probe', 'acme')`, probe))
		for _, r := range recv.Requests() {
			if r.Path == "/talent.candidate.created/envelope" {
				return nil
			}
		}
		return fmt.Errorf("the sink has not loaded the new subscriptions yet")
	})
	execSQL(t, d.env["WALHOOK_PG_URL"], story[1:]...)
	execSQL(t, d.env["WALHOOK_PG_URL"],
		`update incident.instance set is_deleted = true where id = 134`,
		`insert into incident.instance (id, name, status, severity, start_time, session_instance_id, tenant_id, created_by, updated_by)
		 values (135, 'Second face', 'TRIGGERED', 'HIGH', now(), 2523, 'acme', 1, 1)`,
		`delete from incident.instance where id = 135`,
		`insert into talent.candidate (id, name, email, password_hash, tenant_id) values (7, 'Ada', null, 'secret', 'acme')`,
		`begin; insert into talent.project (id, candidate_id, title, started_on, tenant_id) values (70, 7, 'Engine', '2024-01-02', 'acme');
		 insert into talent.project_technology (id, project_id, name, tenant_id) values (700, 70, 'Go', 'acme'); commit`,
		`update talent.project set title = 'Analytical Engine' where id = 70`,
		`delete from talent.project_technology where id = 700`,
		`update talent.candidate set email = 'ada@example.com', is_deleted = true where id = 7`)

	// What must arrive: per root key, its versions by event (the last version of 7 is deleted).
	want := map[string]map[string][]int{ // path event → root key → versions
		"incident.instance.created": {"134": {1}, "135": {1}},
		"incident.instance.updated": {"134": {2}},
		"incident.instance.deleted": {"134": {3}, "135": {2}},
		"talent.candidate.created":  {"7": {1}},
		"talent.candidate.updated":  {"7": {2, 3, 4}},
		"talent.candidate.deleted":  {"7": {5}},
	}
	keyOf := func(ev string, body map[string]any) string {
		if obj, ok := body["new"].(map[string]any); ok { // old_new
			body = obj
		}
		return fmt.Sprint(body["id"])
	}
	kafkatest.Eventually(t, 60*time.Second, func() error {
		got := map[string]map[string][]int{}
		for _, r := range recv.Requests() {
			ev, f, _ := strings.Cut(strings.TrimPrefix(r.Path, "/"), "/")
			if f != "bare" {
				continue
			}
			var body map[string]any
			if json.Unmarshal(r.Body, &body) != nil {
				continue
			}
			v, _ := strconv.Atoi(r.Header.Get("walhook-version"))
			k := keyOf(ev, body)
			if _, ok := want[ev][k]; !ok {
				continue // the probes
			}
			if got[ev] == nil {
				got[ev] = map[string][]int{}
			}
			if !slices.Contains(got[ev][k], v) {
				got[ev][k] = append(got[ev][k], v)
				slices.Sort(got[ev][k])
			}
		}
		for ev, keys := range want {
			for k, vs := range keys {
				if !slices.Equal(got[ev][k], vs) {
					return fmt.Errorf("%s of %s: versions %v arrived, want %v", ev, k, got[ev][k], vs)
				}
			}
		}
		return nil
	})

	// walhook catalog export, both formats, now that every topic has been written (so its schema
	// is registered): the YAML is the same document.
	out := filepath.Join(t.TempDir(), "asyncapi.json")
	if r := d.run("catalog", "export", "--output", out); r.code != 0 || !strings.Contains(r.stderr, "wrote "+out) {
		t.Fatalf("walhook catalog export: %s", r)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	doc := &asyncDoc{t: t, json: map[string]*jsonschema.Schema{}}
	if err := json.Unmarshal(raw, &doc.raw); err != nil {
		t.Fatalf("the export is not JSON: %v", err)
	}
	ry := d.run("catalog", "export", "--format", "yaml")
	var fromYAML any
	if ry.code != 0 || yaml.Unmarshal([]byte(ry.stdout), &fromYAML) != nil {
		t.Fatalf("walhook catalog export --format yaml: %s", ry)
	}
	if a, b := mustJSON(t, fromYAML), mustJSON(t, doc.raw); a != b {
		i := 0
		for i < min(len(a), len(b)) && a[i] == b[i] {
			i++
		}
		t.Fatalf("the YAML export is not the JSON export; from byte %d:\n%.300s\n%.300s", i, a[max(0, i-200):], b[max(0, i-200):])
	}
	if r := d.run("catalog", "export", "--format", "xml"); r.code == 0 || !strings.Contains(r.stderr, "use json or yaml") {
		t.Fatalf("--format xml: %s", r)
	}

	// The API serves the same payload schemas as the document.
	var ets struct {
		Items []struct {
			Event   string
			Type    string `json:"event_type"`
			Schemas map[string]any
		}
	}
	if err := json.Unmarshal(apiCall(t, base, key, "GET", "/v1/event-types", nil), &ets); err != nil {
		t.Fatal(err)
	}
	var events []string
	for _, et := range ets.Items {
		events = append(events, et.Event)
		for _, f := range []string{"bare", "envelope"} {
			inDoc := doc.message(et.Type + "_" + f)["payload"].(map[string]any)["schema"]
			if mustJSON(t, et.Schemas[f]) != mustJSON(t, inDoc) {
				t.Errorf("/v1/event-types and the AsyncAPI document disagree on %s (%s)", et.Event, f)
			}
		}
	}
	if !slices.Equal(events, wantEvents) {
		t.Fatalf("event types %v, want %v", events, wantEvents)
	}

	t.Run("webhooks", func(t *testing.T) {
		doc.t = t
		seen := map[string]int{}
		for _, r := range recv.Requests() {
			ev, f, _ := strings.Cut(strings.TrimPrefix(r.Path, "/"), "/")
			et := strings.ReplaceAll(ev, ".", "_")
			name := et + "_" + f
			if err := apitest.Validate(doc.schema(name, "payload"), r.Body); err != nil {
				t.Errorf("%s: the body of version %s does not match the catalog: %v\n%s", r.Path, r.Header.Get("walhook-version"), err, r.Body)
			}
			if err := apitest.Validate(doc.schema(name, "headers"), headerDoc(r.Header)); err != nil {
				t.Errorf("%s: the headers do not match the catalog: %v\n%v", r.Path, err, r.Header)
			}
			if err := verifySignature(secrets[r.Path], r); err != nil {
				t.Errorf("%s: %v", r.Path, err)
			}
			seen[name]++
		}
		for _, et := range ets.Items {
			for _, f := range []string{"bare", "envelope"} {
				if seen[et.Type+"_"+f] == 0 {
					t.Errorf("no webhook of %s in form %s was checked", et.Event, f)
				}
			}
		}
		t.Logf("checked %d webhooks: %v", len(recv.Requests()), seen)
	})

	t.Run("topics", func(t *testing.T) {
		doc.t = t
		topics := doc.kafkaTopics()
		if len(topics) != 6 {
			t.Fatalf("the document's Kafka channels are %v; want a snapshot, a compliance and a compliance latest topic per root", topics)
		}
		cfg := &config.Config{Kafka: config.Kafka{Brokers: strings.Split(d.env["WALHOOK_BROKERS"], ","), TopicPrefix: d.prefix},
			SchemaRegistry: config.SchemaRegistry{URL: d.env["WALHOOK_REGISTRY_URL"]}}
		cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Kafka.Brokers...), kgo.ConsumeTopics(topics...),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		reg, err := kafkaconn.AvroRegistry(cfg, cl)
		if err != nil {
			t.Fatal(err)
		}
		codecs := map[string]*goavro.Codec{}
		codec := func(text string) *goavro.Codec {
			if c := codecs[text]; c != nil {
				return c
			}
			c, err := goavro.NewCodec(text)
			if err != nil {
				t.Fatalf("Avro schema %.300s: %v", text, err)
			}
			codecs[text] = c
			return c
		}
		// versions[topic][root key] are the versions read, each checked.
		versions := map[string]map[string][]int64{}
		check := func(rec *kgo.Record) {
			name, msg := doc.topicMessage(rec.Topic)
			docSchema := mustJSON(t, msg["payload"].(map[string]any)["schema"])
			if rec.Value == nil {
				return // a tombstone of the latest topic
			}
			if xs := msg["x-walhook-schema"].(map[string]any); len(rec.Value) > 5 && rec.Value[0] == 0 { // Confluent framing
				if id := binary.BigEndian.Uint32(rec.Value[1:5]); xs["registered"] != true || xs["id"] != float64(id) {
					t.Fatalf("%s was written with schema id %d; the document gives %v", rec.Topic, id, xs)
				}
			}
			writer, body, err := reg.Resolve(context.Background(), rec.Value)
			if err != nil {
				t.Fatalf("%s: resolve the writer schema: %v", rec.Topic, err)
			}
			if codec(writer).CanonicalSchema() != codec(docSchema).CanonicalSchema() {
				t.Fatalf("%s was written with a schema the AsyncAPI document does not give:\nwritten: %s\ndocument: %s", rec.Topic, writer, docSchema)
			}
			native, rest, err := codec(docSchema).NativeFromBinary(body)
			if err != nil || len(rest) != 0 {
				t.Fatalf("%s offset %d does not decode with the document's schema: %v (%d bytes left)", rec.Topic, rec.Offset, err, len(rest))
			}
			v := native.(map[string]any)
			hs := map[string][]string{}
			for _, h := range rec.Headers {
				hs[h.Key] = []string{string(h.Value)}
			}
			if msg["headers"] == nil {
				t.Fatalf("%s: the document gives no headers, the records have %v", rec.Topic, hs)
			}
			if err := apitest.Validate(doc.schema(name, "headers"), headerDoc(hs)); err != nil {
				t.Errorf("%s: headers %v do not match the document: %v", rec.Topic, hs, err)
			}
			if string(rec.Key) != v["key"] || hs["walhook-version"][0] != fmt.Sprint(v["version"]) || hs["walhook-event-type"][0] != v["event_type"] {
				t.Errorf("%s: key %q and headers %v disagree with the value's key %v, version %v, event type %v", rec.Topic, rec.Key, hs, v["key"], v["version"], v["event_type"])
			}
			if p, ok := v["payload"].(string); ok { // a snapshot: its payload is the bare webhook body
				if err := apitest.Validate(doc.schema(v["event_type"].(string)+"_bare", "payload"), []byte(p)); err != nil {
					t.Errorf("%s: the payload of %v version %v does not match the bare schema: %v\n%s", rec.Topic, v["key"], v["version"], err, p)
				}
			}
			if versions[rec.Topic] == nil {
				versions[rec.Topic] = map[string][]int64{}
			}
			versions[rec.Topic][string(rec.Key)] = append(versions[rec.Topic][string(rec.Key)], v["version"].(int64))
		}
		// Every topic must hold every version of 134, 135 and 7 in order (the latest topic at
		// least the last, being compacted).
		last := map[string]int64{"134": 3, "135": 2, "7": 5}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for {
			done := true
			for _, topic := range topics {
				for k, n := range last {
					if !strings.Contains(topic, map[bool]string{true: "incident", false: "talent"}[k != "7"]) {
						continue
					}
					got := versions[topic][k]
					if strings.HasSuffix(topic, ".latest") {
						done = done && slices.Contains(got, n)
					} else {
						done = done && len(got) >= int(n)
					}
				}
			}
			if done {
				break
			}
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("the topics do not hold every version within 60s: %v", versions)
			}
			fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
			fs.EachRecord(check)
		}
		for topic, keys := range versions {
			for k, vs := range keys {
				if strings.HasSuffix(topic, ".latest") {
					continue
				}
				if vs = vs[:min(len(vs), int(last[k]))]; k != "" && last[k] > 0 && !slices.Equal(vs, seq(last[k])) {
					t.Errorf("%s holds versions %v of %s; want 1..%d in order", topic, vs, k, last[k])
				}
			}
		}
		t.Logf("checked the records of %v", versions)
	})
}

func seq(n int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i) + 1
	}
	return out
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
