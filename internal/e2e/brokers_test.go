package e2e

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/apachekafka"
	"github.com/walhook/walhook/internal/kafkatest"
)

// Knobs of the broker, from the environment.
const (
	// envKafka is kafkatest's WALHOOK_TEST_KAFKA: kfake (default) runs the in-process test
	// broker in a helper process; apache one Apache Kafka node; apache3 three nodes (replication
	// factor 3, min.insync.replicas 2) that a second nemesis SIGKILLs, restarts and pauses.
	envKafka = kafkatest.EnvKafka
	// envMembership is static or dynamic group membership of the stages. Default: static on
	// kfake (its group coordinator sometimes never expires a member SIGKILLed inside JoinGroup,
	// see internal/embedkafka), dynamic on Apache Kafka, as the shipped Deployments run.
	envMembership = "WALHOOK_E2E_MEMBERSHIP"
	// envGroupProtocol is the stages' kafka.group_protocol: classic (default) or consumer (KIP-848).
	envGroupProtocol = "WALHOOK_E2E_GROUP_PROTOCOL"
)

// brokers is the Kafka the stages run against.
type brokers struct {
	addrs  string
	apache *apachekafka.Cluster // nil on kfake
	static bool                 // stages are static group members
	// groupProtocol is the stages' kafka.group_protocol.
	groupProtocol string
}

func startBrokers(t *testing.T, dir string) *brokers {
	t.Helper()
	b := &brokers{}
	switch mode := os.Getenv(envKafka); mode {
	case "", "kfake":
		b.addrs, b.static = startBroker(t, filepath.Join(dir, "kafka")), true
	case "apache", "apache3":
		nodes := 1
		if mode == "apache3" {
			nodes = 3
		}
		// Segments roll every 5 s and the cleaner runs every second on anything dirty, so the
		// compacted topics (bubble-up's changelog, the reference and state topics) are compacted
		// many times during a run, also over transactions that SIGKILLed stages left open or
		// aborted: kfake's compaction lost such state, Apache Kafka's must not.
		b.apache = kafkatest.StartApache(t, apachekafka.Options{Nodes: nodes, Dir: filepath.Join(dir, "kafka"),
			BrokerConfig: map[string]string{
				"log.roll.ms":                     "5000",
				"log.cleaner.backoff.ms":          "1000",
				"log.cleaner.min.cleanable.ratio": "0.01",
			}})
		b.addrs = strings.Join(b.apache.Brokers(), ",")
	default:
		t.Fatalf("%s=%q: use kfake, apache or apache3", envKafka, mode)
	}
	switch m := os.Getenv(envMembership); m {
	case "":
	case "static", "dynamic":
		b.static = m == "static"
	default:
		t.Fatalf("%s=%q: use static or dynamic", envMembership, m)
	}
	switch b.groupProtocol = cmp.Or(os.Getenv(envGroupProtocol), config.GroupProtocolClassic); b.groupProtocol {
	case config.GroupProtocolClassic:
	case config.GroupProtocolConsumer:
	default:
		t.Fatalf("%s=%q: use classic or consumer", envGroupProtocol, b.groupProtocol)
	}
	t.Logf("broker: %s, %s group membership, %s group protocol", b.describe(), map[bool]string{true: "static", false: "dynamic"}[b.static], b.groupProtocol)
	return b
}

func (b *brokers) describe() string {
	if b.apache == nil {
		return "kfake " + b.addrs
	}
	return fmt.Sprintf("Apache Kafka %s, %d nodes at %s", b.apache.Version(), len(b.apache.Nodes()), b.addrs)
}

// brokerNemesis SIGKILLs and restarts, or pauses and resumes, one broker of a three-node
// cluster at a time: a random one, the coordinator of one of walhook's consumer groups, or the
// coordinator of one of its open transactions. A pause lasts past broker.session.timeout.ms (9 s
// by default), so the controller fences the broker and moves its leaderships; on SIGCONT it
// rejoins.
type brokerNemesis struct {
	rnd     *rand.Rand
	cluster *apachekafka.Cluster
	adm     *kadm.Client
	groups  []string
	tap     *tap
	start   time.Time

	mu     sync.Mutex
	faults []*brokerFault // guarded by mu
}

// brokerFault is one fault and how long the pipeline took to make progress again: from the
// fault's start until the snapshot or compliance topics grew.
type brokerFault struct {
	at       time.Duration // since the nemesis started
	kind     string        // "kill" or "pause"
	node     int
	target   string // "random", "group coordinator of …", "transaction coordinator of …"
	down     time.Duration
	recovery time.Duration // -1 when no progress was seen before the next fault
}

func newBrokerNemesis(t *testing.T, seed uint64, b *brokers, groups []string, tp *tap) *brokerNemesis {
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.apache.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &brokerNemesis{rnd: rand.New(rand.NewPCG(seed, 0xb0b)), cluster: b.apache, adm: kadm.NewClient(cl),
		groups: groups, tap: tp, start: time.Now()}
}

// run injects a fault every 5-10 s until ctx ends, and leaves every broker running.
func (n *brokerNemesis) run(ctx context.Context) {
	for {
		if !sleepCtx(ctx, time.Duration(5000+n.rnd.IntN(5000))*time.Millisecond) {
			return
		}
		f := n.pick(ctx)
		snaps, logs := n.tap.counts()
		began := time.Now()
		node := n.cluster.Node(f.node)
		switch f.kind {
		case "kill":
			_ = node.Kill()
			sleepCtx(ctx, time.Duration(500+n.rnd.IntN(3500))*time.Millisecond)
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			if err := node.Restart(rctx); err != nil {
				f.target += fmt.Sprintf(" (restart: %v)", err)
			}
			cancel()
		case "pause":
			_ = node.Pause()
			sleepCtx(context.WithoutCancel(ctx), 12*time.Second) // always resumed: no broker stays stopped
			_ = node.Resume()
		}
		f.down = time.Since(began)
		f.recovery = n.progressSince(ctx, began, snaps, logs)
		n.mu.Lock()
		n.faults = append(n.faults, f)
		n.mu.Unlock()
	}
}

// pick chooses the next fault.
func (n *brokerNemesis) pick(ctx context.Context) *brokerFault {
	f := &brokerFault{at: time.Since(n.start), kind: "kill", target: "random"}
	if n.rnd.IntN(3) == 0 {
		f.kind = "pause"
	}
	f.node = 1 + n.rnd.IntN(len(n.cluster.Nodes()))
	switch n.rnd.IntN(3) {
	case 1:
		g := n.groups[n.rnd.IntN(len(n.groups))]
		if c, ok := n.adm.FindGroupCoordinators(ctx, g)[g]; ok && c.Err == nil {
			f.node, f.target = int(c.NodeID), "group coordinator of "+g
		}
	case 2:
		txns, err := n.adm.ListTransactions(ctx, nil, []string{"Ongoing"})
		ids := txns.TransactionalIDs()
		if err == nil && len(ids) > 0 {
			id := ids[n.rnd.IntN(len(ids))]
			f.node, f.target = int(txns[id].Coordinator), "transaction coordinator of "+id
		}
	}
	return f
}

// progressSince waits (up to a minute) until the outputs grew past their sizes at the fault's
// start, and returns how long after the start that was; -1 when they did not.
func (n *brokerNemesis) progressSince(ctx context.Context, began time.Time, snaps, logs int) time.Duration {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if s, l := n.tap.counts(); s > snaps && l > logs {
			return time.Since(began)
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			break
		}
	}
	if s, l := n.tap.counts(); s > snaps && l > logs {
		return time.Since(began)
	}
	return -1
}

func (n *brokerNemesis) String() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var b strings.Builder
	var recov []time.Duration
	kinds := map[string]int{}
	for _, f := range n.faults {
		kinds[f.kind]++
		if f.recovery >= 0 {
			recov = append(recov, f.recovery)
		}
		fmt.Fprintf(&b, "  %7.3fs %s node %d (%s): down %s, outputs grew after %s\n", f.at.Seconds(), f.kind, f.node, f.target,
			f.down.Round(time.Millisecond), fmtRecovery(f.recovery))
	}
	slices.Sort(recov)
	summary := fmt.Sprintf("%d broker faults (%d kills, %d pauses)", len(n.faults), kinds["kill"], kinds["pause"])
	if len(recov) > 0 {
		summary += fmt.Sprintf("; outputs grew again after p50 %s, max %s", recov[len(recov)/2].Round(time.Millisecond), recov[len(recov)-1].Round(time.Millisecond))
	}
	return summary + "\n" + b.String()
}

func fmtRecovery(d time.Duration) string {
	if d < 0 {
		return "never (before the next fault)"
	}
	return d.Round(time.Millisecond).String()
}

// checkNoCrashes fails the run when a stage exited by itself on Apache Kafka: a broker failover
// or a killed peer must not end a stage (kafkaconn.RunSessions replaces a failed session). On
// kfake its group bugs can still end a session, so there the exits are only reported.
func checkNoCrashes(rep *report, sys *system) {
	if sys.kafka.apache == nil {
		return
	}
	for _, p := range sys.procs {
		if _, _, crashes := p.stats(); len(crashes) > 0 {
			rep.fail("stage %s exited by itself %d times on Apache Kafka: %s", p.name, len(crashes), strings.Join(crashes, "; "))
		}
	}
}

// sleepCtx sleeps d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}
