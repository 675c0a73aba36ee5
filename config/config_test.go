package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/demo"
)

// minimal is the smallest valid config; broken cases edit it.
const minimal = `postgres:
  url: postgres://walhook@localhost:5432/app
kafka:
  brokers: [localhost:9092]
model:
  roots:
    - table: incident.instance
      key: id
      subordinates:
        - table: incident.timeline
          parent_column: incident_instance_id
          array: timeline
`

// noEnv keeps tests independent of the developer's WALHOOK_* variables.
var noEnv = config.Options{}

func envOf(vars map[string]string) config.Options {
	return config.Options{LookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
}

func parse(t *testing.T, yaml string, opts config.Options) (*config.Config, *config.ValidationError) {
	t.Helper()
	cfg, err := config.ParseWith([]byte(yaml), "walhook.yaml", opts)
	if err == nil {
		return cfg, nil
	}
	var ve *config.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("ParseWith: want a *ValidationError, got %T: %v", err, err)
	}
	return nil, ve
}

func mustParse(t *testing.T, yaml string, opts config.Options) *config.Config {
	t.Helper()
	cfg, ve := parse(t, yaml, opts)
	if ve != nil {
		t.Fatalf("ParseWith: unexpected problems:\n%v", ve)
	}
	return cfg
}

func TestConfigDemoFileIsValid(t *testing.T) {
	data, err := os.ReadFile("testdata/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := mustParse(t, string(data), noEnv)
	r := cfg.Model.Roots[0]
	if r.Table != "incident.instance" || r.EventPrefix != "incident.instance" || r.Key != "id" {
		t.Errorf("root = %+v", r)
	}
	if s := r.Subordinates[0]; s.Table != "incident.timeline" || s.ParentColumn != "incident_instance_id" || s.Array != "timeline" {
		t.Errorf("subordinate = %+v", s)
	}
	ref := r.References[0]
	if ref.Field != "session" || len(ref.Columns) != 6 {
		t.Errorf("reference = %+v", ref)
	}
	if got := cfg.Model.Tables(); strings.Join(got, ",") != "incident.instance,incident.timeline,session.instance" {
		t.Errorf("Tables() = %v", got)
	}
}

func TestConfigDemoModelOverBase(t *testing.T) {
	base := &config.Config{
		Postgres: config.Postgres{URL: "postgres://postgres@127.0.0.1:5433/walhook"},
		Kafka:    config.Kafka{Brokers: []string{"127.0.0.1:39092"}},
		Log:      config.Log{Format: "console"},
	}
	cfg, err := config.ParseWith([]byte(demo.ModelYAML), "internal/demo/model.yaml", config.Options{Base: base})
	if err != nil {
		t.Fatalf("demo model over a base: %v", err)
	}
	if cfg.Postgres.URL != base.Postgres.URL || cfg.Kafka.Brokers[0] != "127.0.0.1:39092" || cfg.Log.Format != "console" {
		t.Errorf("base values lost: %+v", cfg)
	}
	if len(cfg.Model.Roots) != 1 || len(cfg.Model.Tables()) != 3 {
		t.Errorf("model = %+v", cfg.Model)
	}
	if base.Model.Roots != nil || base.Kafka.TopicPrefix != "" {
		t.Errorf("ParseWith changed its base: %+v", base)
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg := mustParse(t, minimal, noEnv)
	checks := []struct {
		name      string
		got, want any
	}{
		{"publication", cfg.Postgres.Publication, "walhook"},
		{"slot", cfg.Postgres.Slot, "walhook"},
		{"client_id", cfg.Kafka.ClientID, "walhook"},
		{"topic_prefix", cfg.Kafka.TopicPrefix, "walhook."},
		{"partitions", cfg.Kafka.Partitions, int32(6)},
		{"replication_factor", cfg.Kafka.ReplicationFactor, int16(-1)},
		{"http.listen", cfg.HTTP.Listen, "127.0.0.1:9464"},
		{"log.level", cfg.Log.Level, "info"},
		{"log.format", cfg.Log.Format, "json"},
		{"snapshot_chunk_rows", cfg.CDC.SnapshotChunkRows, 10000},
		{"memory_limit_bytes", cfg.CDC.MemoryLimitBytes, int64(64 << 20)},
		{"status_interval", cfg.CDC.StatusInterval, time.Second},
		{"heartbeat_interval", cfg.CDC.HeartbeatInterval, 10 * time.Second},
		{"event_prefix", cfg.Model.Roots[0].EventPrefix, "incident.instance"},
		{"tenant_column", cfg.Model.Roots[0].TenantColumn, "tenant_id"},
		{"soft_delete_column", cfg.Model.Roots[0].SoftDeleteColumn, "is_deleted"},
		{"snapshot_form", cfg.Model.Roots[0].SnapshotForm, config.FormBare},
		{"sub key", cfg.Model.Roots[0].Subordinates[0].Key, "id"},
		{"sub order_by", cfg.Model.Roots[0].Subordinates[0].OrderBy, "id"},
		{"sub tenant_column", cfg.Model.Roots[0].Subordinates[0].TenantColumn, "tenant_id"},
		{"sub soft_delete_column", cfg.Model.Roots[0].Subordinates[0].SoftDeleteColumn, "is_deleted"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestConfigExplicitZeros checks the keys whose zero value means something other than "default".
func TestConfigExplicitZeros(t *testing.T) {
	yaml := minimal + `http:
  listen: ""
cdc:
  heartbeat_interval: 0s
`
	cfg := mustParse(t, strings.Replace(yaml, "  brokers:", "  replication_factor: 0\n  brokers:", 1), noEnv)
	if cfg.HTTP.Listen != "" {
		t.Errorf("listen: \"\" should disable the endpoint, got %q", cfg.HTTP.Listen)
	}
	if cfg.CDC.HeartbeatInterval != 0 {
		t.Errorf("heartbeat_interval: 0s should disable heartbeats, got %s", cfg.CDC.HeartbeatInterval)
	}
	if cfg.Kafka.ReplicationFactor != -1 {
		t.Errorf("replication_factor: 0 should mean the broker default -1, got %d", cfg.Kafka.ReplicationFactor)
	}
	sub := strings.Replace(minimal, "array: timeline", "array: timeline\n          order_by: created_at", 1)
	if got := mustParse(t, sub, noEnv).Model.Roots[0].Subordinates[0].OrderBy; got != "created_at" {
		t.Errorf("order_by = %q, want created_at", got)
	}
}

func TestConfigEnvOverridesWin(t *testing.T) {
	withSASL := strings.Replace(minimal, "  brokers:", "  sasl: {mechanism: PLAIN}\n  brokers:", 1)
	cfg := mustParse(t, withSASL, envOf(map[string]string{
		"WALHOOK_PG_URL":              "postgres://other@db:5432/x",
		"WALHOOK_BROKERS":             " k1:9092, k2:9093 ,",
		"WALHOOK_KAFKA_SASL_USERNAME": "svc",
		"WALHOOK_KAFKA_SASL_PASSWORD": "pw",
		"WALHOOK_REGISTRY_URL":        "https://sr:8081",
		"WALHOOK_REGISTRY_USERNAME":   "sr-user",
		"WALHOOK_REGISTRY_PASSWORD":   "sr-pw",
		"WALHOOK_HTTP_LISTEN":         ":9999",
		"WALHOOK_LOG_LEVEL":           "debug",
		"WALHOOK_INSTANCE_ID":         "walhook-deliver-0 ",
	}))
	got := []string{cfg.Postgres.URL, strings.Join(cfg.Kafka.Brokers, ","), cfg.Kafka.SASL.Username, cfg.Kafka.SASL.Password,
		cfg.SchemaRegistry.URL, cfg.SchemaRegistry.Username, cfg.SchemaRegistry.Password, cfg.HTTP.Listen, cfg.Log.Level, cfg.Kafka.InstanceID}
	want := []string{"postgres://other@db:5432/x", "k1:9092,k2:9093", "svc", "pw", "https://sr:8081", "sr-user", "sr-pw", ":9999", "debug", "walhook-deliver-0"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("override %d: got %q, want %q", i, got[i], want[i])
		}
	}
}

func TestConfigEnvEmptyListenDisables(t *testing.T) {
	cfg := mustParse(t, minimal, envOf(map[string]string{"WALHOOK_HTTP_LISTEN": ""}))
	if cfg.HTTP.Listen != "" {
		t.Errorf("WALHOOK_HTTP_LISTEN= should disable the endpoint, got %q", cfg.HTTP.Listen)
	}
}

func TestConfigEnvProblemNamesTheVariable(t *testing.T) {
	_, ve := parse(t, minimal, envOf(map[string]string{"WALHOOK_BROKERS": "nohost"}))
	p := findProblem(t, ve, "kafka.brokers[0]")
	if p.Line != 0 || p.Origin != "WALHOOK_BROKERS (environment)" {
		t.Errorf("problem %+v should name WALHOOK_BROKERS and have no file line", p)
	}
	// The file is not blamed: the line starts with the variable, not with walhook.yaml.
	if want := `WALHOOK_BROKERS (environment): kafka.brokers[0]: "nohost" is not host:port`; !strings.HasPrefix(ve.Error(), want) {
		t.Errorf("problem printed as %q, want it to start with %q", ve.Error(), want)
	}
	_, ve = parse(t, strings.Replace(minimal, "  brokers:", "  sasl: {mechanism: PLAIN, username: u}\n  brokers:", 1),
		envOf(map[string]string{"WALHOOK_KAFKA_SASL_PASSWORD": ""}))
	if p := findProblem(t, ve, "kafka.sasl.password"); p.Origin != "WALHOOK_KAFKA_SASL_PASSWORD (environment, set but empty)" {
		t.Errorf("an empty variable should be named as set but empty: %+v", p)
	}
}

func TestConfigFlagOverridesWinAndAreNamed(t *testing.T) {
	opts := envOf(map[string]string{"WALHOOK_PG_URL": "postgres://env@db/x", "WALHOOK_BROKERS": "env:9092"})
	opts.Overrides = []config.Override{{Flag: "--pg-url", Env: "WALHOOK_PG_URL", Value: "postgres://flag@db/x"},
		{Flag: "--brokers", Env: "WALHOOK_BROKERS", Value: "a:1, b:2"}}
	cfg := mustParse(t, minimal, opts)
	if cfg.Postgres.URL != "postgres://flag@db/x" || strings.Join(cfg.Kafka.Brokers, ",") != "a:1,b:2" {
		t.Errorf("flags should win over the environment and the file: %q %v", cfg.Postgres.URL, cfg.Kafka.Brokers)
	}
	opts.Overrides = []config.Override{{Flag: "--brokers", Env: "WALHOOK_BROKERS", Value: "nohost"}}
	_, ve := parse(t, minimal, opts)
	if p := findProblem(t, ve, "kafka.brokers[0]"); p.Origin != "--brokers (flag)" || p.Line != 0 {
		t.Errorf("problem %+v should name --brokers", p)
	}
}

func TestConfigInstanceID(t *testing.T) {
	if got := mustParse(t, minimal, noEnv).Kafka.InstanceID; got != "" {
		t.Errorf("default kafka.instance_id = %q, want empty (dynamic membership)", got)
	}
	withID := strings.Replace(minimal, "  brokers:", "  instance_id: bubbleup-1\n  brokers:", 1)
	if got := mustParse(t, withID, noEnv).Kafka.InstanceID; got != "bubbleup-1" {
		t.Errorf("kafka.instance_id = %q, want bubbleup-1", got)
	}
	_, ve := parse(t, minimal, envOf(map[string]string{"WALHOOK_INSTANCE_ID": "pod/0"}))
	p := findProblem(t, ve, "kafka.instance_id")
	if p.Origin != "WALHOOK_INSTANCE_ID (environment)" || !strings.Contains(p.Message, "pod/0") {
		t.Errorf("problem %+v should name the value and WALHOOK_INSTANCE_ID", p)
	}
	_, ve = parse(t, minimal, envOf(map[string]string{"WALHOOK_INSTANCE_ID": strings.Repeat("a", 250)}))
	findProblem(t, ve, "kafka.instance_id")
}

func TestConfigGroupProtocol(t *testing.T) {
	if got := mustParse(t, minimal, noEnv).Kafka.GroupProtocol; got != config.GroupProtocolClassic {
		t.Errorf("default kafka.group_protocol = %q, want classic", got)
	}
	consumer := strings.Replace(minimal, "  brokers:", "  group_protocol: consumer\n  brokers:", 1)
	if got := mustParse(t, consumer, noEnv).Kafka.GroupProtocol; got != config.GroupProtocolConsumer {
		t.Errorf("kafka.group_protocol = %q, want consumer", got)
	}
	_, ve := parse(t, strings.Replace(minimal, "  brokers:", "  group_protocol: kip848\n  brokers:", 1), noEnv)
	if p := findProblem(t, ve, "kafka.group_protocol"); !strings.Contains(p.Message, `"kip848"`) || !strings.Contains(p.Message, `"consumer"`) || p.Line == 0 {
		t.Errorf("problem %+v should name the value, the choices and its line", p)
	}
}

// TestConfigDecodeAndValidationProblemsInOnePass: an unknown key and a mistyped value do not
// hide the problems validation finds, so one run lists everything.
func TestConfigDecodeAndValidationProblemsInOnePass(t *testing.T) {
	yaml := `postgres:
  url: postgres://walhook@localhost:5432/app
  slots: walhook
kafka:
  brokers: 9092
cdc:
  status_interval: 5
log:
  level: loud
model:
  roots:
    - table: incident.instance
      snapshot_form: diff
`
	_, ve := parse(t, yaml, noEnv)
	wantProblems(t, ve,
		`walhook.yaml:3: postgres.slots: unknown key "slots"; did you mean "slot"?`,
		"walhook.yaml:5: kafka.brokers: cannot unmarshal",
		"walhook.yaml:7: cdc.status_interval: cannot unmarshal !!int `5` into time.Duration; write a Go duration string",
		`walhook.yaml:9: log.level: "loud" is not a level`,
		"walhook.yaml:12: model.roots[0].key: missing",
		`walhook.yaml:13: model.roots[0].snapshot_form: "diff" is not a snapshot form`,
	)
}

// wantProblems checks that ve lists exactly the problems with these prefixes, in this order.
func wantProblems(t *testing.T, ve *config.ValidationError, want ...string) {
	t.Helper()
	if ve == nil {
		t.Fatalf("no problems, want %d", len(want))
	}
	lines := strings.Split(ve.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(want), ve)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], w)
		}
	}
}

// TestConfigSyntaxErrorLine: broken YAML is reported on the line that breaks it, not on the
// line of the mapping around it (yaml.v3's own line).
func TestConfigSyntaxErrorLine(t *testing.T) {
	cases := []struct {
		name, yaml string
		line       int
	}{
		{"tab indentation", "postgres:\n  url: postgres://db/x\n\tslot: a\n", 3},
		{"unclosed flow mapping", "postgres:\n  url: postgres://db/x\nkafka: {brokers: [k:9092]\nmodel: {}\n", 3},
		{"unclosed quote", "postgres:\n  url: postgres://db/x\n  slot: \"a\nkafka:\n  brokers: [k:1]\n", 3},
		{"mapping value in a scalar", "postgres:\n  url: postgres://db/x\nkafka:\n  brokers: a: b\n", 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, ve := parse(t, tc.yaml, noEnv)
			if ve == nil || len(ve.Problems) != 1 || ve.Problems[0].Line != tc.line || !strings.HasPrefix(ve.Problems[0].Message, "invalid YAML: ") {
				t.Fatalf("want one invalid-YAML problem on line %d, got:\n%v", tc.line, ve)
			}
		})
	}
}

func TestConfigStarterValidates(t *testing.T) {
	cfg := mustParse(t, config.Starter, noEnv)
	if len(cfg.Model.Roots) != 1 || cfg.Deliver.AllowLoopback {
		t.Errorf("starter: %d roots, allow_loopback %t; want the demo root and loopback refused", len(cfg.Model.Roots), cfg.Deliver.AllowLoopback)
	}
	if !strings.Contains(config.Starter, "# ") {
		t.Error("the starter file has no comments")
	}
}

func TestConfigFind(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	env := map[string]string{}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if _, _, err := config.Find("", lookup); !errors.Is(err, config.ErrNoConfig) || !strings.Contains(err.Error(), "WALHOOK_CONFIG") {
		t.Fatalf("no file anywhere: %v", err)
	}
	if err := os.WriteFile("walhook.yaml", []byte(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	if path, how, err := config.Find("", lookup); err != nil || path != "walhook.yaml" || how != "./walhook.yaml" {
		t.Errorf("./walhook.yaml: %q %q %v", path, how, err)
	}
	other := filepath.Join(dir, "other.yaml")
	if err := os.WriteFile(other, []byte(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	env["WALHOOK_CONFIG"] = other
	if path, how, err := config.Find("", lookup); err != nil || path != other || how != "WALHOOK_CONFIG" {
		t.Errorf("WALHOOK_CONFIG wins over ./walhook.yaml: %q %q %v", path, how, err)
	}
	if path, _, err := config.Find("walhook.yaml", lookup); err != nil || path != "walhook.yaml" {
		t.Errorf("--config wins over WALHOOK_CONFIG: %q %v", path, err)
	}
	env["WALHOOK_CONFIG"] = filepath.Join(dir, "gone.yaml")
	if _, _, err := config.Find("", lookup); err == nil || !strings.Contains(err.Error(), "WALHOOK_CONFIG="+env["WALHOOK_CONFIG"]) {
		t.Errorf("a missing WALHOOK_CONFIG file should be named with the variable: %v", err)
	}
}

func TestConfigSeveralProblemsTogether(t *testing.T) {
	yaml := `postgres:
  url: ""
kafka:
  brokers: []
log:
  level: loud
model:
  roots:
    - table: incident.instance
      snapshot_form: diff
`
	_, ve := parse(t, yaml, noEnv)
	wantProblems(t, ve,
		"walhook.yaml:2: postgres.url: missing",
		"walhook.yaml:4: kafka.brokers: empty",
		"walhook.yaml:6: log.level: \"loud\" is not a level",
		"walhook.yaml:9: model.roots[0].key: missing; set the root table's primary-key column, e.g. key: id",
		"walhook.yaml:10: model.roots[0].snapshot_form: \"diff\" is not a snapshot form",
	)
}

func TestConfigRedacted(t *testing.T) {
	withSASL := strings.Replace(minimal, "  brokers:", "  sasl: {mechanism: PLAIN}\n  brokers:", 1)
	cfg := mustParse(t, withSASL, envOf(map[string]string{
		"WALHOOK_PG_URL":              "postgres://u:s3cret@db:5432/x?sslmode=require",
		"WALHOOK_KAFKA_SASL_USERNAME": "svc",
		"WALHOOK_KAFKA_SASL_PASSWORD": "s3cret",
		"WALHOOK_REGISTRY_URL":        "https://ru:s3cret@sr:8081",
	}))
	r := cfg.Redacted()
	for _, s := range []string{r.Postgres.URL, r.Kafka.SASL.Password, r.SchemaRegistry.URL} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("secret left in %q", s)
		}
	}
	if r.Postgres.URL != "postgres://u:xxxxx@db:5432/x?sslmode=require" {
		t.Errorf("postgres url = %q", r.Postgres.URL)
	}
	if cfg.Kafka.SASL.Password != "s3cret" {
		t.Error("Redacted changed the original")
	}
	r.Model.Roots[0].Subordinates[0].Array = "changed"
	if cfg.Model.Roots[0].Subordinates[0].Array != "timeline" {
		t.Error("Redacted shares the model with the original")
	}
}

func TestConfigRedactedDSN(t *testing.T) {
	cfg := &config.Config{Postgres: config.Postgres{URL: "host=db user=u password='a b' dbname=x"}}
	if got := cfg.Redacted().Postgres.URL; got != "host=db user=u password=xxxxx dbname=x" {
		t.Errorf("redacted DSN = %q", got)
	}
}

func TestConfigLoadMissingFile(t *testing.T) {
	_, err := config.LoadWith("testdata/nope.yaml", noEnv)
	var ve *config.ValidationError
	if err == nil || errors.As(err, &ve) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("want a wrapped not-exist error, got %v", err)
	}
}

func findProblem(t *testing.T, ve *config.ValidationError, path string) config.Problem {
	t.Helper()
	if ve == nil {
		t.Fatalf("no problems; want one at %s", path)
	}
	for _, p := range ve.Problems {
		if p.Path == path {
			return p
		}
	}
	t.Fatalf("no problem at %s; got:\n%v", path, ve)
	return config.Problem{}
}
