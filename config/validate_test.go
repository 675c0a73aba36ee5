package config_test

import (
	"strings"
	"testing"

	"github.com/walhook/walhook/config"
)

// head is the valid part every broken model below shares; it ends on line 5.
const head = `postgres:
  url: postgres://walhook@localhost:5432/app
kafka:
  brokers: [localhost:9092]
model:
`

func TestConfigBrokenModels(t *testing.T) {
	cases := []struct {
		name string
		yaml string // appended to head; line 6 is the first line of a case
		path string
		line int
		msg  string
	}{
		{"unknown key", `  roots:
    - table: incident.instance
      key: id
      subordinates:
        - table: incident.timeline
          parent_colum: incident_instance_id
          array: timeline
`, "model.roots[0].subordinates[0].parent_colum", 11, `unknown key "parent_colum"; did you mean "parent_column"?`},
		{"missing root key", `  roots:
    - table: incident.instance
`, "model.roots[0].key", 7, "missing; set the root table's primary-key column, e.g. key: id"},
		{"subordinate without parent column", `  roots:
    - table: incident.instance
      key: id
      subordinates:
        - table: incident.timeline
          array: timeline
`, "model.roots[0].subordinates[0].parent_column", 10, "missing; set the column of this table that holds the parent's key"},
		{"subordinate without array", `  roots:
    - {table: incident.instance, key: id, subordinates: [{table: incident.timeline, parent_column: incident_instance_id}]}
`, "model.roots[0].subordinates[0].array", 7, "missing; set the field name"},
		{"duplicate event prefix", `  roots:
    - {table: incident.instance, key: id}
    - {table: incident.instance_v2, key: id, event_prefix: incident.instance}
`, "model.roots[1].event_prefix", 8, `"incident.instance" is already the event prefix of model.roots[0]`},
		{"event prefix form", `  roots:
    - {table: incident.instance, key: id, event_prefix: incident}
`, "model.roots[0].event_prefix", 7, "must be <service>.<resource>"},
		{"bad snapshot form", `  roots:
    - table: incident.instance
      key: id
      snapshot_form: diff
`, "model.roots[0].snapshot_form", 9, `"diff" is not a snapshot form; use bare`},
		{"cyclic nesting", `  roots:
    - table: a.a
      key: id
      subordinates:
        - table: a.b
          parent_column: a_id
          array: bs
          subordinates:
            - table: a.a
              parent_column: b_id
              array: as
`, "model.roots[0].subordinates[0].subordinates[0].table", 14, "cyclic nesting a.a → a.b → a.a"},
		{"table twice in one tree", `  roots:
    - table: a.a
      key: id
      subordinates:
        - {table: a.b, parent_column: a_id, array: bs}
        - {table: a.b, parent_column: a_id, array: more_bs}
`, "model.roots[0].subordinates[1].table", 11, "table a.b is already used at model.roots[0].subordinates[0]"},
		{"duplicate array", `  roots:
    - table: a.a
      key: id
      subordinates:
        - {table: a.b, parent_column: a_id, array: items}
        - {table: a.c, parent_column: a_id, array: items}
`, "model.roots[0].subordinates[1].array", 11, `array name "items" is already used by model.roots[0].subordinates[0].array`},
		{"array collides with reference field", `  roots:
    - table: incident.instance
      key: id
      subordinates:
        - {table: incident.timeline, parent_column: incident_instance_id, array: session}
      references:
        - {table: session.instance, column: session_instance_id, field: session, columns: [id]}
`, "model.roots[0].references[0].field", 12, `reference field name "session" is already used`},
		{"reference without columns", `  roots:
    - table: incident.instance
      key: id
      references:
        - {table: session.instance, column: session_instance_id, field: session}
`, "model.roots[0].references[0].columns", 10, "empty; list the referenced table's columns"},
		{"reference without table", `  roots:
    - table: incident.instance
      key: id
      references:
        - {column: session_instance_id, field: session, columns: [id]}
`, "model.roots[0].references[0].table", 10, "missing; set the referenced table"},
		{"table not schema-qualified", `  roots:
    - {table: instance, key: id}
`, "model.roots[0].table", 7, `"instance" is not schema-qualified; write schema.table, e.g. public.instance`},
		{"no roots", `  roots: []
`, "model.roots", 6, "no roots"},
		{"bad duration", `  roots: [{table: incident.instance, key: id}]
cdc:
  status_interval: 10
`, "cdc.status_interval", 8, "write a Go duration string such as 10s"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, ve := parse(t, head+c.yaml, noEnv)
			p := findProblem(t, ve, c.path)
			if p.Line != c.line || !strings.Contains(p.Message, c.msg) {
				t.Errorf("got %s\nwant line %d with %q", p, c.line, c.msg)
			}
		})
	}
}

func TestConfigBrokenSettings(t *testing.T) {
	cases := []struct {
		name, yaml, path, msg string
	}{
		{"missing postgres url", "postgres: {url: \"\"}\n", "postgres.url", "missing; set postgres.url or WALHOOK_PG_URL"},
		{"no brokers", "kafka: {brokers: []}\n", "kafka.brokers", "empty; list at least one broker"},
		{"broker without port", "kafka: {brokers: [kafka-0]}\n", "kafka.brokers[0]", `"kafka-0" is not host:port`},
		{"unknown sasl", "kafka: {brokers: [k:1], sasl: {mechanism: GSSAPI, username: u, password: p}}\n", "kafka.sasl.mechanism", `"GSSAPI" is not supported`},
		{"sasl without password", "kafka: {brokers: [k:1], sasl: {mechanism: PLAIN, username: u}}\n", "kafka.sasl.password", "WALHOOK_KAFKA_SASL_PASSWORD"},
		{"tls cert without key", "kafka: {brokers: [k:1], tls: {enabled: true, cert_file: c.pem}}\n", "kafka.tls.key_file", "missing while cert_file is set"},
		{"log format", "log: {format: xml}\n", "log.format", "use json or console"},
		{"slot name", "postgres: {url: postgres://x, slot: My-Slot}\n", "postgres.slot", "not a valid replication slot name"},
		{"registry url", "schema_registry: {url: registry:8081}\n", "schema_registry.url", "not an http(s) URL"},
		{"record limit too small", "kafka: {brokers: [k:1], max_record_bytes: 1000}\n", "kafka.max_record_bytes", "1000; use 65536 to 67108864 bytes, at most the max.message.bytes"},
		{"record limit too large", "kafka: {brokers: [k:1], max_record_bytes: 1073741824}\n", "kafka.max_record_bytes", "use 65536 to 67108864"},
		{"compression", "kafka: {brokers: [k:1], compression: brotli}\n", "kafka.compression", `"brotli" is not supported; use one of none, gzip, snappy, lz4, zstd`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, ve := parse(t, c.yaml+"model: {roots: [{table: a.b, key: id}]}\n", noEnv)
			p := findProblem(t, ve, c.path)
			if !strings.Contains(p.Message, c.msg) {
				t.Errorf("got %s\nwant %q", p, c.msg)
			}
		})
	}
}

// TestConfigValidateInCode checks a Config built in code, which has no line information.
func TestConfigValidateInCode(t *testing.T) {
	cfg := &config.Config{Model: config.Model{Roots: []config.Root{{Table: "a.b"}}}}
	cfg.SetDefaults()
	err := cfg.Validate()
	if err == nil {
		t.Fatal("want problems")
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if !strings.HasPrefix(line, "postgres.url: ") && !strings.HasPrefix(line, "kafka.brokers: ") && !strings.HasPrefix(line, "model.roots[0].key: ") {
			t.Errorf("unexpected problem %q", line)
		}
	}
}
