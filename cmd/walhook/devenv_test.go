package main

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestDevEnvFileSources: dev.env is read by a POSIX shell; values with quotes survive, and the
// binary's directory goes first on PATH so `walhook status` works as the README prints it.
func TestDevEnvFileSources(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	path := filepath.Join(t.TempDir(), "dev.env")
	env := map[string]string{"WALHOOK_CONFIG": "/x/it's here/walhook.yaml", "WALHOOK_PG_URL": "postgres://u@h:1/db?sslmode=disable"}
	if err := writeEnvFile(path, env, "/opt/wal hook/bin"); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sh, "-c", `PATH=/usr/bin:/bin; . "$0"; printf '%s\n%s\n%s\n' "$WALHOOK_CONFIG" "$WALHOOK_PG_URL" "$PATH"`, path).CombinedOutput()
	if err != nil {
		t.Fatalf("sourcing dev.env: %v\n%s", err, out)
	}
	want := "/x/it's here/walhook.yaml\npostgres://u@h:1/db?sslmode=disable\n/opt/wal hook/bin:/usr/bin:/bin\n"
	if string(out) != want {
		t.Errorf("after sourcing:\n%s\nwant:\n%s", out, want)
	}
}
