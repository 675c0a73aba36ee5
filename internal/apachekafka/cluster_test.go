package apachekafka

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// requireTools skips on a developer machine without Java or Maven, and fails in CI (CI=true),
// where the harness must run.
func requireTools(t *testing.T) {
	t.Helper()
	_, jerr := exec.LookPath("java")
	_, merr := exec.LookPath("mvn")
	if jerr == nil && merr == nil {
		return
	}
	msg := fmt.Sprintf("the Apache Kafka harness needs java and mvn on PATH (java: %v, mvn: %v)", jerr, merr)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func start(t *testing.T, opts Options) *Cluster {
	t.Helper()
	requireTools(t)
	opts.Log = func(format string, args ...any) {
		t.Logf("%s "+format, append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
	c, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return c
}

func client(t *testing.T, c *Cluster, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.Brokers()...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// transact commits n records to topic in one transaction with a fresh transactional producer.
func transact(ctx context.Context, t *testing.T, c *Cluster, topic, txnID string, n int) error {
	t.Helper()
	cl := client(t, c, kgo.TransactionalID(txnID), kgo.DefaultProduceTopic(topic))
	if err := cl.BeginTransaction(); err != nil {
		return err
	}
	for i := range n {
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte("v")}).FirstErr(); err != nil {
			return err
		}
	}
	return cl.EndTransaction(ctx, kgo.TryCommit)
}

// readCommitted reads topic from the start until it has n records.
func readCommitted(ctx context.Context, t *testing.T, c *Cluster, topic string, n int) error {
	t.Helper()
	cl := client(t, c, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := 0
	for got < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %d of %d records of %s: %w", got, n, topic, err)
		}
		got += fs.NumRecords()
	}
	return nil
}

func TestSingleNodeTransactions(t *testing.T) {
	c := start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm := kadm.NewClient(client(t, c))
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, "single"); err != nil {
		t.Fatal(err)
	}
	if err := transact(ctx, t, c, "single", "single-txn", 10); err != nil {
		t.Fatalf("transaction: %v", err)
	}
	if err := readCommitted(ctx, t, c, "single", 10); err != nil {
		t.Fatal(err)
	}
	pids := c.Pids()
	if len(pids) != 1 {
		t.Fatalf("pids %v, want one JVM", pids)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pids)
	if _, err := os.Stat(c.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary dir %s left behind: %v", c.Dir(), err)
	}
}

// TestThreeNodeQuorum: internal topics replicated three ways with min ISR 2; a killed node
// (the leader of the data partition) and a paused node leave the cluster writable with acks=all;
// a restarted node rejoins.
func TestThreeNodeQuorum(t *testing.T) {
	// Faster failure detection than Kafka's defaults (9 s, 2 s, 30 s) keeps the test short; the
	// whole-system test runs with the defaults.
	c := start(t, Options{Nodes: 3, BrokerConfig: map[string]string{
		"broker.session.timeout.ms":    "4000",
		"broker.heartbeat.interval.ms": "1000",
		"replica.lag.time.max.ms":      "8000",
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	adm := kadm.NewClient(client(t, c))
	md, err := adm.BrokerMetadata(ctx)
	if err != nil || len(md.Brokers) != 3 {
		t.Fatalf("metadata: %v brokers, %v", len(md.Brokers), err)
	}
	td, err := adm.ListTopics(ctx, "__transaction_state", "__consumer_offsets")
	if err != nil {
		t.Fatal(err)
	}
	for name, d := range td {
		for _, p := range d.Partitions {
			if len(p.Replicas) != 3 {
				t.Fatalf("%s[%d] has replicas %v, want 3", name, p.Partition, p.Replicas)
			}
		}
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, "__transaction_state")
	if err != nil {
		t.Fatal(err)
	}
	if !hasConfig(rcs[0].Configs, "min.insync.replicas", "2") {
		t.Fatalf("__transaction_state configs lack min.insync.replicas=2")
	}
	if _, err := adm.CreateTopic(ctx, 1, 3, nil, "three"); err != nil {
		t.Fatal(err)
	}
	if err := transact(ctx, t, c, "three", "three-a", 5); err != nil {
		t.Fatalf("transaction with three nodes: %v", err)
	}
	leader := leaderOf(ctx, t, adm, "three")
	if err := c.Node(leader).Kill(); err != nil {
		t.Fatal(err)
	}
	if err := transact(ctx, t, c, "three", "three-b", 5); err != nil {
		t.Fatalf("transaction with node %d killed: %v", leader, err)
	}
	if err := c.Node(leader).Restart(ctx); err != nil {
		t.Fatalf("restart node %d: %v", leader, err)
	}
	opts := c.opts
	opts.Log("node %d killed and restarted", leader)
	other := leader%3 + 1
	if err := c.Node(other).Pause(); err != nil {
		t.Fatal(err)
	}
	err = transact(ctx, t, c, "three", "three-c", 5)
	if rerr := c.Node(other).Resume(); rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Fatalf("transaction with node %d paused: %v", other, err)
	}
	opts.Log("committed with node %d paused", other)
	if err := readCommitted(ctx, t, c, "three", 15); err != nil {
		t.Fatal(err)
	}
}

func hasConfig(cs []kadm.Config, key, want string) bool {
	for _, c := range cs {
		if c.Key == key && c.MaybeValue() == want {
			return true
		}
	}
	return false
}

func leaderOf(ctx context.Context, t *testing.T, adm *kadm.Client, topic string) int {
	t.Helper()
	td, err := adm.ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	return int(td[topic].Partitions[0].Leader)
}

// waitGone polls until none of pids is a live process.
func waitGone(t *testing.T, pids []int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var alive []int
		for _, pid := range pids {
			if processAlive(pid) {
				alive = append(alive, pid)
			}
		}
		if len(alive) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range alive {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Fatalf("JVMs %v outlived their owner", alive)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processAlive reports whether pid is a process that is neither gone nor a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

const helperEnv = "WALHOOK_APACHEKAFKA_HELPER"

// TestHelperStartCluster is not a test: TestNoJVMOutlivesItsParent runs the test binary with it
// as a child that starts a cluster, prints its JVMs' pids, and then hangs or panics.
func TestHelperStartCluster(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process for TestNoJVMOutlivesItsParent")
	}
	c, err := Start(context.Background(), Options{Dir: os.Getenv(helperEnv + "_DIR")})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("started", strings.Trim(fmt.Sprint(c.Pids()), "[]"))
	if mode == "panic" {
		time.Sleep(100 * time.Millisecond) // let the parent read the line
		panic("helper panics with a cluster running")
	}
	select {}
}

// TestNoJVMOutlivesItsParent: a test binary that is SIGKILLed or panics runs no cleanup; the
// JVMs it started must die with it.
func TestNoJVMOutlivesItsParent(t *testing.T) {
	requireTools(t)
	for _, mode := range []string{"sigkill", "panic"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir() // the helper never removes its own
			helper := exec.Command(os.Args[0], "-test.run=^TestHelperStartCluster$", "-test.v")
			helper.Env = append(os.Environ(), helperEnv+"="+mode, helperEnv+"_DIR="+dir)
			out, err := helper.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := helper.Start(); err != nil {
				t.Fatal(err)
			}
			var pids []int
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if f := strings.Fields(sc.Text()); len(f) > 1 && f[0] == "started" {
					for _, s := range f[1:] {
						pid, _ := strconv.Atoi(s)
						pids = append(pids, pid)
					}
					break
				}
			}
			if len(pids) == 0 {
				_ = helper.Process.Kill()
				_ = helper.Wait()
				t.Fatal("helper started no cluster")
			}
			go func() { _, _ = bufio.NewReader(out).WriteTo(discard{}) }() // keep the pipe drained until the helper exits
			if mode == "sigkill" {
				if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
			_ = helper.Wait()
			waitGone(t, pids)
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestResolveNamesMissingTools(t *testing.T) {
	java, lerr := exec.LookPath("java")
	empty := t.TempDir()
	t.Setenv("JAVA_HOME", "")
	t.Setenv("PATH", empty)
	_, err := Resolve(context.Background(), "", t.TempDir())
	if !IsMissingTool(err) || !strings.Contains(err.Error(), "java is not on PATH") || !strings.Contains(err.Error(), "JAVA_HOME") {
		t.Fatalf("without java: %v", err)
	}

	if lerr != nil {
		t.Skip("no java here to test the Maven error with")
	}
	t.Setenv("JAVA_HOME", filepath.Dir(filepath.Dir(realPath(t, java))))
	_, err = Resolve(context.Background(), "", t.TempDir())
	if !IsMissingTool(err) || !strings.Contains(err.Error(), "Maven (mvn) is not on PATH") {
		t.Fatalf("without mvn: %v", err)
	}

	_, err = Resolve(context.Background(), "latest", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "not a Kafka release number") {
		t.Fatalf("bad version: %v", err)
	}
}

func realPath(t *testing.T, p string) string {
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
