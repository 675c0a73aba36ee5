package main

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/internal/embedpg"
	"github.com/walhook/walhook/internal/kafkatest"
)

// buildBinary compiles walhook once per test so the test exercises the real process: flags,
// signal handling and child-process cleanup.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "walhook")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "export ")
		if !ok {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		env[k] = strings.Trim(v, "'")
	}
	return env
}

// TestDevStartsAndStopsCleanly is `make run` followed by Ctrl-C: the stack comes up, its servers
// answer, and SIGINT leaves no process or port behind.
func TestDevStartsAndStopsCleanly(t *testing.T) {
	if _, err := embedpg.FindBinaries(); err != nil {
		t.Skipf("no PostgreSQL binaries: %v", err)
	}
	bin := buildBinary(t)
	dir := filepath.Join(t.TempDir(), ".walhook")
	cmd := exec.Command(bin, "dev", "--dir", dir, "--http-listen", "127.0.0.1:0")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	envFile := filepath.Join(dir, "dev.env")
	started := time.Now()
	kafkatest.Eventually(t, 60*time.Second, func() error {
		if !strings.Contains(out.String(), "walhook dev is ready") {
			return os.ErrNotExist
		}
		_, err := os.Stat(envFile)
		return err
	})
	t.Logf("ready after %v", time.Since(started).Round(time.Millisecond))
	env := readEnvFile(t, envFile)
	for _, k := range []string{"WALHOOK_PG_URL", "WALHOOK_BROKERS", "WALHOOK_REGISTRY_URL", "WALHOOK_RECEIVER_URL"} {
		if env[k] == "" {
			t.Fatalf("%s missing from %s:\n%v", k, envFile, env)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, env["WALHOOK_PG_URL"])
	if err != nil {
		t.Fatalf("connect to dev PostgreSQL: %v", err)
	}
	var n int
	if err := conn.QueryRow(ctx, "select count(*) from incident.status").Scan(&n); err != nil || n != 4 {
		t.Fatalf("demo schema not applied: %d enum rows, %v", n, err)
	}
	var pgPid int
	if err := conn.QueryRow(ctx, "select pg_backend_pid()").Scan(&pgPid); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	kc, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(env["WALHOOK_BROKERS"], ",")...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kadm.NewClient(kc).ListBrokers(ctx); err != nil {
		t.Fatalf("dev broker does not answer: %v", err)
	}
	kc.Close()

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("walhook dev exited with %v after SIGINT:\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("walhook dev did not stop within 30s of SIGINT:\n%s", out.String())
	}

	pgAddr := strings.Split(strings.Split(env["WALHOOK_PG_URL"], "@")[1], "/")[0]
	for name, addr := range map[string]string{"PostgreSQL": pgAddr, "Kafka": strings.Split(env["WALHOOK_BROKERS"], ",")[0]} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still listens on %s after walhook dev stopped", name, addr)
		}
	}
	if err := syscall.Kill(pgPid, 0); err == nil && !isZombie(pgPid) {
		t.Errorf("PostgreSQL backend %d still runs after walhook dev stopped", pgPid)
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	fields := strings.Fields(string(b))
	return len(fields) > 2 && fields[2] == "Z"
}
