package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/kafkatest"
	"github.com/walhook/walhook/sinks/webhook"
	"github.com/walhook/walhook/sinks/webhook/webhooktest"
)

// envChildConfig switches the test binary into a child sink: it runs webhook.Sink with the
// JSON config in this variable until it is killed (or SIGTERM). Tests re-execute themselves
// with it to SIGKILL a real sink process.
const envChildConfig = "WALHOOK_WEBHOOK_TEST_CHILD_CONFIG"

func TestMain(m *testing.M) {
	if c := os.Getenv(envChildConfig); c != "" {
		os.Exit(runChild(c))
	}
	os.Exit(m.Run())
}

// runChild is the main of a child sink. It logs warnings to stderr.
func runChild(cfgJSON string) int {
	var cfg config.Config
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child sink: config:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log, _ := zap.NewDevelopment(zap.IncreaseLevel(zap.WarnLevel))
	s, err := webhook.New(&cfg, webhook.WithLogger(log), webhook.WithKafkaOpts(kgo.FetchMaxWait(100*time.Millisecond)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child sink:", err)
		return 2
	}
	if path := os.Getenv(envChildCPUProfile); path != "" {
		if f, err := os.Create(path); err == nil {
			_ = pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
		}
	}
	if err := s.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "child sink: run:", err)
		return 1
	}
	return 0
}

// envChildCPUProfile makes a child sink write a CPU profile to this path (until SIGTERM):
// WALHOOK_WEBHOOK_TEST_CHILD_CPUPROFILE=/tmp/sink.prof go test -bench Scale ...
const envChildCPUProfile = "WALHOOK_WEBHOOK_TEST_CHILD_CPUPROFILE"

// child is a sink in its own process, SIGKILLed by kill and by t.Cleanup.
type child struct {
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
}

// startChild runs a sink with cfg in a child process. Its output goes to a file whose tail is
// logged when the test fails.
func startChild(t testing.TB, cfg *config.Config, name string) *child {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &child{log: filepath.Join(t.TempDir(), name+".log"), exited: make(chan struct{})}
	out, err := os.Create(c.log)
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(os.Environ(), envChildConfig+"="+string(b))
	c.cmd.Stdout, c.cmd.Stderr, c.cmd.SysProcAttr = out, out, childAttr()
	if err := c.cmd.Start(); err != nil {
		_ = out.Close()
		t.Fatalf("start child sink %s: %v", name, err)
	}
	go func() { _ = c.cmd.Wait(); _ = out.Close(); close(c.exited) }()
	t.Cleanup(func() {
		c.kill()
		if t.Failed() {
			b, _ := os.ReadFile(c.log)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("child sink %s log (tail):\n%s", name, b)
		}
	})
	return c
}

// kill SIGKILLs the child, if still running, and waits until it is reaped.
func (c *child) kill() {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Kill()
	<-c.exited
}

// running fails the test when the child exited by itself.
func (c *child) running(t testing.TB) {
	t.Helper()
	select {
	case <-c.exited:
		b, _ := os.ReadFile(c.log)
		t.Fatalf("child sink exited by itself: %v\n%s", c.cmd.ProcessState, b)
	default:
	}
}

func TestSinkKill(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts sink processes")
	}
	s := startServers(t)
	t.Run("Takeover", func(t *testing.T) { testTakeover(t, s) })
	t.Run("KillMidLoad", func(t *testing.T) { testKillMidLoad(t, s) })
	t.Run("KillDeferring", func(t *testing.T) { testKillDeferring(t, s) })
}

// testTakeover runs two members of the sink's group, one in a child process, SIGKILLs the child
// and measures how long the survivor takes to own its partitions and deliver their snapshots.
// With franz-go's defaults (45 s session, 60 s rebalance timeout) this took 45 s or more; with
// deliver.session_timeout (default 10 s) it must be well within takeoverBudget.
func testTakeover(t *testing.T, s *servers) {
	const takeoverBudget = 30 * time.Second
	h := newHarness(t, s)
	rcv := webhooktest.Start(t)
	sub := h.setPath(h.sub("acme", "incident.instance.updated", rcv.URL()))
	e := &expectation{t: t, subs: map[string]*webhook.Subscription{sub.UUID: sub}, want: map[string]bool{}}
	batch := func(version int64) {
		var snaps []avro.Snapshot
		for k := 1; k <= 30; k++ { // 30 keys spread over the topic's 3 partitions
			snaps = append(snaps, snap(strconv.Itoa(k), "acme", version))
			e.want[fmt.Sprintf("%s|%d|%d", sub.UUID, k, version)] = true
		}
		h.produce(snaps...)
	}

	victim := startChild(t, h.cfg, "victim")
	batch(1)
	kafkatest.Eventually(t, 60*time.Second, func() error { victim.running(t); return e.check(rcv) })
	h.run() // the survivor, in this process
	adm := kadm.NewClient(h.prod)
	kafkatest.Eventually(t, 60*time.Second, func() error { return twoMembersStable(t, adm, h.cfg.WebhookGroup()) })

	victim.kill()
	killed := time.Now()
	batch(2)
	kafkatest.Eventually(t, takeoverBudget, func() error { return e.check(rcv) })
	t.Logf("survivor delivered every snapshot of the killed member's partitions %s after the SIGKILL (session timeout %s)",
		time.Since(killed).Round(100*time.Millisecond), h.cfg.Deliver.SessionTimeout)
}

// twoMembersStable says whether group is stable with two members that both own partitions.
func twoMembersStable(t *testing.T, adm *kadm.Client, group string) error {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	gs, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return err
	}
	g := gs[group]
	if g.Err != nil {
		return g.Err
	}
	if g.State != "Stable" || len(g.Members) != 2 {
		return fmt.Errorf("group %s: %s with %d members", group, g.State, len(g.Members))
	}
	for _, m := range g.Members {
		if a, ok := m.Assigned.AsConsumer(); !ok || len(a.Topics) == 0 {
			return fmt.Errorf("group %s: member %s owns no partition yet", group, m.MemberID)
		}
	}
	return nil
}

// testKillMidLoad is issue 5's "kill -9 of the sink mid-load losing no delivery": the sink runs
// in a child process while this test produces a randomized mix of tenants and event types in
// small batches. Three times, once the current child is delivering, it lets the load run for a
// seeded random moment, SIGKILLs the child and starts a new one after a short random pause. At
// the end every (subscription, root, version) has reached its receiver at least once, and no
// request reached a subscription of another tenant or event type.
func testKillMidLoad(t *testing.T, s *servers) {
	_ = killUnderLoad(t, s, 4000, 90*time.Second, func(c *config.Config) {
		// A restarted sink finds thousands of deliveries redone at once: let them queue at the
		// endpoint rather than be deferred to the retry topics (testKillDeferring covers those).
		c.Deliver.EndpointConcurrency, c.Deliver.EndpointRate, c.Deliver.EndpointQueue = 8, 5000, 20000
	})
}

// testKillDeferring is testKillMidLoad with an endpoint queue small enough that the tenants
// sharing the receiver are deferred through the retry topics all along: deferred deliveries,
// and the retry records they become, must survive the kills too.
func testKillDeferring(t *testing.T, s *servers) {
	h := killUnderLoad(t, s, 2000, 120*time.Second, func(c *config.Config) {
		c.Deliver.EndpointConcurrency, c.Deliver.EndpointQueue = 4, 40
	})
	retry := h.cfg.Kafka.WebhookRetryTopic(h.cfg.Deliver.RetryTiers[0])
	ends, err := kadm.NewClient(h.prod).ListEndOffsets(t.Context(), retry)
	if err != nil {
		t.Fatal(err)
	}
	var deferred int64
	ends.Each(func(o kadm.ListedOffset) { deferred += o.Offset })
	if deferred == 0 {
		t.Fatalf("no delivery went through %s: the test deferred nothing", retry)
	}
	t.Logf("%d records went through %s", deferred, retry)
}

// killUnderLoad runs the load of testKillMidLoad (n snapshots) against child sinks configured
// by mod, SIGKILLs three of them and waits at most drain for every delivery.
func killUnderLoad(t *testing.T, s *servers, n int, drain time.Duration, mod func(*config.Config)) *harness {
	h := newHarness(t, s, func(c *config.Config) {
		c.Deliver.SessionTimeout = 6 * time.Second // the broker's minimum: a kill stalls the group least
		mod(c)
	})
	rcv := webhooktest.Start(t)
	rcv.Always(webhooktest.Response{Delay: 10 * time.Millisecond}) // requests are in flight when the child dies
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("WALHOOK_TEST_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (rerun with WALHOOK_TEST_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	e, snaps := planMix(t, h, rcv, n, seed)

	// produce sends the next batch of the load, about 200 snapshots per second.
	const batch, every = 20, 100 * time.Millisecond
	produce := func() {
		n := min(batch, len(snaps))
		h.produce(snaps[:n]...)
		snaps = snaps[n:]
		time.Sleep(every)
	}
	c := startChild(t, h.cfg, "sink-1")
	for k := 1; k <= 3; k++ {
		// Wait, under load, until this incarnation owns the partitions and delivers.
		base, deadline := rcv.Count(), time.Now().Add(60*time.Second)
		for rcv.Count() == base {
			c.running(t)
			if time.Now().After(deadline) {
				t.Fatalf("sink-%d delivered nothing within 60s of its start", k)
			}
			produce()
		}
		for end := time.Now().Add(time.Duration(200+rng.IntN(1500)) * time.Millisecond); time.Now().Before(end); {
			produce()
		}
		c.running(t)
		t.Logf("SIGKILL sink-%d: %d requests received, %d snapshots still to produce", k, rcv.Count(), len(snaps))
		c.kill()
		time.Sleep(time.Duration(100+rng.IntN(700)) * time.Millisecond) // the sink is down
		c = startChild(t, h.cfg, fmt.Sprintf("sink-%d", k+1))
	}
	h.produce(snaps...)
	adm := kadm.NewClient(h.prod)
	kafkatest.Eventually(t, drain, func() error {
		c.running(t)
		if err := e.check(rcv); err != nil {
			return fmt.Errorf("%w (%d requests; %s)", err, rcv.Count(), groupState(t, adm, h.cfg.WebhookGroup()))
		}
		return nil
	})
	t.Logf("%d deliveries expected, %d requests in all (%d repeated after the kills)", len(e.want), rcv.Count(), rcv.Count()-len(e.want))
	return h
}

// groupState describes group's state and members' assignments, for failure messages.
func groupState(t *testing.T, adm *kadm.Client, group string) string {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	gs, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return err.Error()
	}
	g := gs[group]
	out := fmt.Sprintf("group %s", g.State)
	for _, m := range g.Members {
		n := 0
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, tp := range a.Topics {
				n += len(tp.Partitions)
			}
		}
		out += fmt.Sprintf(", member %s owns %d partitions", m.MemberID, n)
	}
	return out
}
