package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// testdataDir is config/testdata as an absolute path, for tests that change directory.
var testdataDir = func() string {
	d, err := filepath.Abs("../../config/testdata")
	if err != nil {
		panic(err)
	}
	return d
}()

// runWalhook runs the root command with args and returns its output and error.
func runWalhook(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "walhook.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func wantExit(t *testing.T, err error, code int) {
	t.Helper()
	var ee exitError
	if !errors.As(err, &ee) || ee.code != code {
		t.Fatalf("want exit status %d, got %v", code, err)
	}
}

func TestConfigValidateOK(t *testing.T) {
	file := "../../config/testdata/demo.yaml"
	out, err := runWalhook(t, "config", "validate", "--config", file)
	if err != nil {
		t.Fatalf("validate: %v\n%s", err, out)
	}
	if want := file + ": ok (1 roots, 3 tables); not checked against a database (add --pg-url URL or --check-db)\n"; out != want {
		t.Errorf("output %q, want %q", out, want)
	}
}

func TestConfigValidateProblems(t *testing.T) {
	path := writeConfig(t, `postgres: {url: postgres://x@db/app}
kafka: {brokers: [k:9092]}
model:
  roots:
    - table: incident.instance
      snapshot_form: diff
`)
	out, err := runWalhook(t, "config", "validate", "--config", path)
	wantExit(t, err, 1)
	for _, want := range []string{path + ":5: model.roots[0].key: missing", path + ":6: model.roots[0].snapshot_form:"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestConfigValidateUnreachableDatabase(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	out, err := runWalhook(t, "config", "validate", "--config", "../../config/testdata/demo.yaml",
		"--pg-url", "postgres://walhook@"+addr+"/app?sslmode=disable")
	wantExit(t, err, 1)
	if !strings.Contains(out, "cannot connect to PostgreSQL at "+addr) {
		t.Errorf("output does not name %s:\n%s", addr, out)
	}
}

func TestConfigShowRedacts(t *testing.T) {
	path := writeConfig(t, `postgres: {url: "postgres://walhook:s3cret@db:5432/app"}
kafka:
  brokers: [k:9092]
  sasl: {mechanism: PLAIN, username: svc, password: s3cret}
model:
  roots: [{table: incident.instance, key: id}]
`)
	out, err := runWalhook(t, "config", "show", "--config", path)
	if err != nil {
		t.Fatalf("show: %v\n%s", err, out)
	}
	if strings.Contains(out, "s3cret") {
		t.Errorf("secret in output:\n%s", out)
	}
	for _, want := range []string{"postgres://walhook:xxxxx@db:5432/app", "password: xxxxx", "status_interval: 1s", "event_prefix: incident.instance"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestConfigValidateMissingFile(t *testing.T) {
	_, err := runWalhook(t, "config", "validate", "--config", filepath.Join(t.TempDir(), "none.yaml"))
	if err == nil || !strings.Contains(err.Error(), "does not exist (--config ") || !strings.Contains(err.Error(), "walhook config init") {
		t.Fatalf("want a read error with the fix, got %v", err)
	}
}

// TestConfigFoundTheOneWay: every command finds the config as --config, else WALHOOK_CONFIG,
// else ./walhook.yaml, and says all three when there is none.
func TestConfigFoundTheOneWay(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	unsetEnv(t, "WALHOOK_CONFIG", "WALHOOK_PG_URL", "WALHOOK_BROKERS", "WALHOOK_REGISTRY_URL")
	_, err := runWalhook(t, "config", "validate")
	for _, want := range []string{"no config file", "--config FILE", "WALHOOK_CONFIG", "walhook.yaml", "walhook config init"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("no config anywhere: %v; want it to mention %q", err, want)
		}
	}
	demo, err := os.ReadFile(filepath.Join(testdataDir, "demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("walhook.yaml", demo, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runWalhook(t, "config", "validate"); err != nil || !strings.HasPrefix(out, "walhook.yaml: ok") {
		t.Errorf("./walhook.yaml: %q %v", out, err)
	}
	other := filepath.Join(dir, "other.yaml")
	if err := os.WriteFile(other, demo, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WALHOOK_CONFIG", other)
	if out, err := runWalhook(t, "config", "validate"); err != nil || !strings.HasPrefix(out, other+": ok") {
		t.Errorf("WALHOOK_CONFIG: %q %v", out, err)
	}
	if out, err := runWalhook(t, "config", "validate", "--config", "walhook.yaml"); err != nil || !strings.HasPrefix(out, "walhook.yaml: ok") {
		t.Errorf("--config wins over WALHOOK_CONFIG: %q %v", out, err)
	}
}

func TestConfigInitWritesAStarterThatValidates(t *testing.T) {
	t.Chdir(t.TempDir())
	out, err := runWalhook(t, "config", "init")
	if err != nil || !strings.Contains(out, "wrote walhook.yaml") {
		t.Fatalf("init: %q %v", out, err)
	}
	data, err := os.ReadFile("walhook.yaml")
	if err != nil || !strings.Contains(string(data), "# ") || !strings.Contains(string(data), "model:") {
		t.Fatalf("starter: %v\n%s", err, data)
	}
	unsetEnv(t, "WALHOOK_CONFIG", "WALHOOK_PG_URL", "WALHOOK_BROKERS", "WALHOOK_REGISTRY_URL")
	if out, err := runWalhook(t, "config", "validate"); err != nil || !strings.HasPrefix(out, "walhook.yaml: ok (1 roots, 3 tables)") {
		t.Errorf("the starter does not validate: %q %v", out, err)
	}
	if _, err := runWalhook(t, "config", "init"); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("init over an existing file: %v; want a refusal naming --force", err)
	}
	if err := os.WriteFile("walhook.yaml", []byte("changed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runWalhook(t, "config", "init", "--force"); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile("walhook.yaml"); string(data) == "changed" {
		t.Error("--force did not overwrite")
	}
	if out, err := runWalhook(t, "config", "init", "--config", "deploy/walhook.yaml"); err != nil || !strings.Contains(out, "deploy/walhook.yaml") {
		t.Errorf("init --config: %q %v", out, err)
	}
}

// TestConfigProblemsInOnePassWithTheirOrigin drives validate over a file with a decoding
// problem, a validation problem and a bad environment value: all three in one run, each
// blamed on where it came from.
func TestConfigProblemsInOnePassWithTheirOrigin(t *testing.T) {
	path := writeConfig(t, `postgres: {url: postgres://x@db/app}
kafka:
  brokers: [k:9092]
  partitons: 3
model:
  roots:
    - table: incident.instance
      snapshot_form: diff
`)
	unsetEnv(t, "WALHOOK_CONFIG", "WALHOOK_PG_URL", "WALHOOK_REGISTRY_URL")
	t.Setenv("WALHOOK_BROKERS", "nohost")
	out, err := runWalhook(t, "config", "validate", "--config", path, "--registry", "ftp://sr")
	wantExit(t, err, 1)
	for _, want := range []string{
		path + `:4: kafka.partitons: unknown key "partitons"; did you mean "partitions"?`,
		path + ":7: model.roots[0].key: missing",
		path + `:8: model.roots[0].snapshot_form: "diff" is not a snapshot form`,
		`WALHOOK_BROKERS (environment): kafka.brokers[0]: "nohost" is not host:port`,
		`--registry (flag): schema_registry.url: "ftp://sr" is not an http(s) URL`,
	} {
		if !strings.Contains(out, want+"") {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, path+": kafka.brokers") {
		t.Errorf("the environment's value is blamed on the file:\n%s", out)
	}
}

// TestConfigValidateSaysWhatItChecked: with --pg-url the report names the server and what
// matched; without, it says the database was not checked.
func TestConfigValidateSaysWhatItChecked(t *testing.T) {
	url := demoDatabase(t)
	file := filepath.Join(testdataDir, "demo.yaml")
	out, err := runWalhook(t, "config", "validate", "--config", file, "--pg-url", url)
	if err != nil {
		t.Fatalf("validate --pg-url: %v\n%s", err, out)
	}
	pc, _ := pgx.ParseConfig(url)
	for _, want := range []string{"checked against PostgreSQL", fmt.Sprintf("at %s:%d", pc.Host, pc.Port), "(database " + pc.Database,
		"3 tables", "3 keys match the model", "wal_level logical"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
