package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/embedpg"
	"github.com/walhook/walhook/internal/kafkatest"
)

// binDir holds the walhook binary the tests of this package share (built once, removed by
// TestMain).
var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binBuild error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "walhook-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// walhookBinary compiles walhook once so the tests exercise the real process: flag parsing,
// config discovery, exit codes, signal handling and child-process cleanup.
func walhookBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binPath = filepath.Join(binDir, "walhook")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binBuild = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binBuild != nil {
		t.Fatal(binBuild)
	}
	return binPath
}

// syncBuffer is an io.Writer a process writes to while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func requirePostgres(t *testing.T) {
	t.Helper()
	if _, err := embedpg.FindBinaries(); err != nil {
		t.Skipf("no PostgreSQL binaries: %v", err)
	}
}

// devStack is a running `walhook dev`, the way a user runs it.
type devStack struct {
	t      *testing.T
	bin    string
	dir    string // --dir
	prefix string // kafka.topic_prefix
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan error
	env    map[string]string // dev.env
	real   bool              // on WALHOOK_TEST_BROKERS
	pgPid  int               // the embedded postmaster
}

// startDev starts `walhook dev --dir dir` and waits until it is ready. On WALHOOK_TEST_BROKERS
// it runs on that Kafka with a topic prefix of its own (given through --config, over the demo
// model or model), so tests sharing the cluster do not meet; else on the embedded broker.
func startDev(t *testing.T, dir, model string, args ...string) *devStack {
	t.Helper()
	d := &devStack{t: t, bin: walhookBinary(t), dir: dir, prefix: "walhook.", out: &syncBuffer{}, exited: make(chan error, 1)}
	args = append([]string{"dev", "--dir", dir, "--http-listen", "127.0.0.1:0"}, args...)
	if realKafka() {
		brokers := strings.Join(kafkatest.Start(t).Brokers, ",")
		d.real = true
		d.prefix = kafkatest.TopicName(t, "dev") + "."
		if model == "" {
			model = demo.ModelYAML
		}
		args = append(args, "--brokers", brokers)
		if reg := os.Getenv(kafkatest.EnvRegistryURL); reg != "" {
			args = append(args, "--registry", reg)
		}
		model = fmt.Sprintf("kafka: {topic_prefix: %q}\n%s", d.prefix, model)
		t.Cleanup(func() { deleteTopics(t, brokers, d.prefix) })
		precreateChangelog(t, brokers, d.prefix)
	}
	if model != "" {
		path := filepath.Join(t.TempDir(), "model.yaml")
		if err := os.WriteFile(path, []byte(model), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", path)
	}
	d.cmd = exec.Command(d.bin, args...)
	d.cmd.Dir = t.TempDir()
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(d.kill)
	t.Cleanup(func() {
		if t.Failed() {
			out := d.out.String()
			t.Logf("walhook dev output (last 6000 bytes):\n%s", out[max(0, len(out)-6000):])
		}
	})
	envFile := filepath.Join(dir, "dev.env")
	started := time.Now()
	d.waitOutput("walhook dev is ready", 90*time.Second)
	t.Logf("walhook dev ready after %v", time.Since(started).Round(time.Millisecond))
	d.env = readEnvFile(t, envFile)
	if b, err := os.ReadFile(filepath.Join(dir, "pg", "postmaster.pid")); err == nil {
		d.pgPid, _ = strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	}
	return d
}

// realKafka reports whether the suite runs on a real Kafka (WALHOOK_TEST_BROKERS, or
// WALHOOK_TEST_KAFKA=apache): walhook dev then runs on it, with a topic prefix of its own.
func realKafka() bool {
	mode := os.Getenv(kafkatest.EnvKafka)
	return os.Getenv(kafkatest.EnvBrokers) != "" || (mode != "" && mode != "kfake")
}

// kill ends the process if a failed test left it running; stop is the clean way.
func (d *devStack) kill() {
	if d.cmd.ProcessState != nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
}

// stop is Ctrl-C: walhook dev must exit 0 and leave no server behind.
func (d *devStack) stop() {
	d.t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
		d.t.Fatal(err)
	}
	select {
	case err := <-d.exited:
		if err != nil {
			d.t.Fatalf("walhook dev exited with %v after SIGINT:\n%s", err, d.out)
		}
	case <-time.After(30 * time.Second):
		d.t.Fatalf("walhook dev did not stop within 30s of SIGINT:\n%s", d.out)
	}
	addrs := map[string]string{"receiver": strings.TrimPrefix(d.env["WALHOOK_RECEIVER_URL"], "http://")}
	if !slices.Contains(d.cmd.Args, "--pg-url") {
		addrs["PostgreSQL"] = strings.Split(strings.Split(d.env["WALHOOK_PG_URL"], "@")[1], "/")[0]
	}
	if !slices.Contains(d.cmd.Args, "--brokers") {
		addrs["Kafka"] = strings.Split(d.env["WALHOOK_BROKERS"], ",")[0]
	}
	for name, addr := range addrs {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			d.t.Errorf("%s still listens on %s after walhook dev stopped", name, addr)
		}
	}
	if d.pgPid > 0 {
		if err := syscall.Kill(d.pgPid, 0); err == nil && !isZombie(d.pgPid) {
			d.t.Errorf("the embedded PostgreSQL (pid %d) still runs after walhook dev stopped", d.pgPid)
		}
	}
	if _, err := os.Stat(filepath.Join(d.dir, "dev.env")); !errors.Is(err, os.ErrNotExist) {
		d.t.Errorf("dev.env outlives the demo (its addresses are dead): %v", err)
	}
}

func (d *devStack) waitOutput(want string, timeout time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(d.out.String(), want) {
		select {
		case err := <-d.exited:
			d.exited <- err
			d.t.Fatalf("walhook dev exited (%v) before printing %q:\n%s", err, want, d.out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("walhook dev did not print %q within %v:\n%s", want, timeout, d.out)
		}
	}
}

// waitInitialSnapshot waits until cdc streams and has finished the initial snapshot of every
// table of a fresh dev stack. A row committed before then is read by the snapshot, which
// fires no webhook (pipeline/doc.go, "Initial snapshot"); a test that expects its rows'
// webhooks writes them after this.
func (d *devStack) waitInitialSnapshot() {
	d.t.Helper()
	kafkatest.Eventually(d.t, 60*time.Second, func() error {
		out := d.out.String()
		started, finished := strings.Count(out, "snapshot of table started"), strings.Count(out, "snapshot of table finished")
		if !strings.Contains(out, "\tstreaming\t") || started == 0 || started != finished {
			return fmt.Errorf("cdc has not finished its initial snapshot (%d of %d tables):\n%s", finished, started, out)
		}
		return nil
	})
}

// result is what one run of the binary did.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// run runs walhook as a user would in another terminal after `. .walhook/dev.env`: dev.env's
// variables and nothing else of walhook's, in a directory without a walhook.yaml.
func (d *devStack) run(args ...string) result {
	d.t.Helper()
	return runBinary(d.t, d.bin, d.envWith(nil), args...)
}

func (d *devStack) envWith(edit map[string]string) []string {
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WALHOOK_") {
			env = append(env, kv)
		}
	}
	for k, v := range d.env {
		if _, ok := edit[k]; !ok {
			env = append(env, k+"="+v)
		}
	}
	for k, v := range edit {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func runBinary(t *testing.T, bin string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Dir = t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("walhook %s: %v", strings.Join(args, " "), err)
	}
	return r
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
		if k == "PATH" { // a shell expression, checked by TestDevEnvFileSources
			continue
		}
		env[k] = strings.Trim(v, "'")
	}
	return env
}

// precreateChangelog creates bubbleup's changelog and waits until every partition has a
// leader. On Apache Kafka bubbleup, started right after it created the changelog itself, can
// list the topic's offsets before all partitions have one and stop with "changelog ... has no
// partition N" (a race in package pipeline, reported; not what these tests are about).
func precreateChangelog(t *testing.T, brokers, prefix string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic, compact := prefix+"bubbleup.changelog", "compact"
	if resp, err := adm.CreateTopic(ctx, 6, -1, map[string]*string{"cleanup.policy": &compact}, topic); err != nil || resp.Err != nil {
		t.Fatalf("create %s: %v %v", topic, err, resp.Err)
	}
	kafkatest.Eventually(t, 30*time.Second, func() error {
		offs, err := adm.ListCommittedOffsets(ctx, topic)
		if err != nil {
			return err
		}
		n := 0
		offs.Each(func(o kadm.ListedOffset) {
			if o.Err == nil {
				n++
			}
		})
		if n != 6 {
			return fmt.Errorf("%s: %d of 6 partitions listed", topic, n)
		}
		return nil
	})
}

// deleteTopics removes what a test's walhook dev created on a shared Kafka.
func deleteTopics(t *testing.T, brokers, prefix string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		return
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		return
	}
	var ours []string
	for _, name := range topics.Names() {
		if strings.HasPrefix(name, prefix) {
			ours = append(ours, name)
		}
	}
	if len(ours) > 0 {
		if _, err := adm.DeleteTopics(ctx, ours...); err != nil {
			t.Logf("delete the test's topics: %v", err)
		}
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
