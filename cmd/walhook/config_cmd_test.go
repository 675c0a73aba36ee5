package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
	if want := file + ": ok (1 roots, 3 tables)\n"; out != want {
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
	if err == nil || !strings.Contains(err.Error(), "pass --config") {
		t.Fatalf("want a read error with the fix, got %v", err)
	}
}
