package embedpg

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

func startCluster(t *testing.T, opts Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return c
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestStartIsReadyForLogicalReplication(t *testing.T) {
	c := startCluster(t, Options{})
	conn := connect(t, c.URL("postgres"))
	ctx := context.Background()

	var walLevel string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		t.Fatal(err)
	}
	if walLevel != "logical" {
		t.Fatalf("wal_level = %q, want logical", walLevel)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot('t', 'pgoutput')"); err != nil {
		t.Fatalf("create slot: %v", err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot('t')"); err != nil {
		t.Fatalf("drop slot: %v", err)
	}
	var fsync string
	if err := conn.QueryRow(ctx, "SHOW fsync").Scan(&fsync); err != nil || fsync != "off" {
		t.Fatalf("fsync = %q (%v), want off for a temporary cluster", fsync, err)
	}
}

func TestURLShape(t *testing.T) {
	c := &Cluster{port: 5433}
	if got, want := c.URL("app"), "postgres://walhook@127.0.0.1:5433/app?sslmode=disable"; got != want {
		t.Fatalf("URL = %q, want %q", got, want)
	}
}

func TestSettingsOverride(t *testing.T) {
	c := startCluster(t, Options{Settings: map[string]string{"max_connections": "50", "work_mem": "8MB"}})
	conn := connect(t, c.URL("postgres"))
	for name, want := range map[string]string{"max_connections": "50", "work_mem": "8MB", "max_replication_slots": "20"} {
		var got string
		if err := conn.QueryRow(context.Background(), "SELECT current_setting($1)", name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

func TestStopLeavesNothingBehind(t *testing.T) {
	c, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	pid := c.cmd.Process.Pid
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	assertGone(t, pid)
	if _, err := os.Stat(c.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary Dir %s still exists (%v)", c.Dir(), err)
	}
}

// assertGone checks that neither the postmaster nor any backend of its group is alive.
func assertGone(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("postmaster pid %d still exists (kill 0: %v)", pid, err)
	}
	if groupAlive(pid) {
		t.Fatalf("backends of process group %d still alive", pid)
	}
}

func TestKillThenStartRecoversCommittedData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pgdata")
	c := startCluster(t, Options{Dir: dir})
	conn := connect(t, c.URL("postgres"))
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	var fsync string
	if err := conn.QueryRow(ctx, "SHOW fsync").Scan(&fsync); err != nil || fsync != "on" {
		t.Fatalf("fsync = %q (%v), want on for a persistent Dir", fsync, err)
	}
	pid := c.cmd.Process.Pid
	if err := c.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	assertGone(t, pid)
	if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); err != nil {
		t.Fatalf("a killed server should leave its postmaster.pid: %v", err)
	}

	c2 := startCluster(t, Options{Dir: dir})
	var v int
	if err := connect(t, c2.URL("postgres")).QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != 42 {
		t.Fatalf("after crash recovery: v=%d err=%v, want 42", v, err)
	}
	if err := c2.Stop(); err != nil {
		t.Fatal(err)
	}
	if !hasCluster(dir) {
		t.Fatalf("Stop removed the persistent Dir %s", dir)
	}
}

// A killed server's postmaster.pid may name a pid that a live, unrelated process has since taken.
func TestStartIgnoresStaleLockOfReusedPid(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pgdata")
	c := startCluster(t, Options{Dir: dir})
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	sleeper := exec.Command("sleep", "60")
	sleeper.SysProcAttr = procAttr(c.ra) // same user as the server, so postgres would see it alive
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	rewritePid(t, filepath.Join(dir, "postmaster.pid"), sleeper.Process.Pid)

	startCluster(t, Options{Dir: dir})
}

func rewritePid(t *testing.T, pidFile string, pid int) {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(string(b), "\n", 2)
	lines[0] = strconv.Itoa(pid)
	if err := os.WriteFile(pidFile, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestFixedPortInUseFailsWithServerLog(t *testing.T) {
	c := startCluster(t, Options{})
	_, err := Start(context.Background(), Options{Port: c.Port()})
	if err == nil {
		t.Fatal("Start on a taken port succeeded")
	}
	if !errors.Is(err, errPortTaken) {
		t.Fatalf("error %v, want errPortTaken", err)
	}
}

func TestFindBinariesMissingNamesTheFix(t *testing.T) {
	s := binSearch{path: t.TempDir(), globs: []string{filepath.Join(t.TempDir(), "*", "bin")}}
	_, err := s.find()
	if !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("err = %v, want ErrNoBinaries", err)
	}
	for _, want := range []string{"apt-get install postgresql", "PostgreSQL 14+", "--pg-url"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestFindBinariesPrefersPathThenHighestVersion(t *testing.T) {
	root := t.TempDir()
	for _, v := range []string{"9.6", "15", "14"} {
		fakeBinaries(t, filepath.Join(root, v, "bin"))
	}
	glob := []string{filepath.Join(root, "*", "bin")}
	got, err := binSearch{globs: glob}.find()
	if err != nil || got != filepath.Join(root, "15", "bin") {
		t.Fatalf("find = %q, %v; want the 15 directory", got, err)
	}

	onPath := filepath.Join(t.TempDir(), "bin")
	fakeBinaries(t, onPath)
	got, err = binSearch{path: "/nonexistent" + string(filepath.ListSeparator) + onPath, globs: glob}.find()
	if err != nil || got != onPath {
		t.Fatalf("find = %q, %v; want the PATH directory %s", got, err, onPath)
	}
}

func fakeBinaries(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"initdb", "postgres"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStartupTime reports what a cluster costs: a cold initdb against a copy of the cached
// template, and a full Start. It asserts nothing about speed (the machine may be loaded).
func TestStartupTime(t *testing.T) {
	binDir, err := FindBinaries()
	if err != nil {
		t.Fatal(err)
	}
	ra, err := currentRunAs()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cold := tempDirIn(t, tempRoot())
	mustPrepare(t, cold, ra)
	begin := time.Now()
	if err := initdb(ctx, binDir, cold, ra, true); err != nil {
		t.Fatal(err)
	}
	initdbTook := time.Since(begin)

	tmpl, err := ensureTemplate(ctx, binDir, ra)
	if err != nil {
		t.Fatal(err)
	}
	copied := tempDirIn(t, tempRoot())
	mustPrepare(t, copied, ra)
	begin = time.Now()
	if err := copyTree(tmpl, copied, ra); err != nil {
		t.Fatal(err)
	}
	copyTook := time.Since(begin)

	begin = time.Now()
	startCluster(t, Options{})
	t.Logf("in %s: initdb %v, template copy %v, Start from template (copy+postgres ready) %v", tempRoot(), initdbTook, copyTook, time.Since(begin))
}

func mustPrepare(t *testing.T, dir string, ra runAs) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := ra.makeTraversable(dir, nopLogger()); err != nil {
		t.Fatal(err)
	}
	if err := ra.own(dir); err != nil {
		t.Fatal(err)
	}
}

func nopLogger() *zap.Logger { return zap.NewNop() }

func tempDirIn(t *testing.T, root string) string {
	t.Helper()
	dir, err := os.MkdirTemp(root, "walhook-embedpg-test-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
