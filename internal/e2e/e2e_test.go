package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/embedpg"
	"github.com/walhook/walhook/internal/status"
	"github.com/walhook/walhook/sinks/webhook/webhooktest"
)

// Knobs of a run, from the environment.
const (
	envDuration = "WALHOOK_E2E_DURATION" // workload duration; default 30s
	envSeed     = "WALHOOK_E2E_SEED"     // seed of workload and nemesis; default: the clock
	envRate     = "WALHOOK_E2E_RATE"     // transactions per second per tenant; default 15
	// envKill names the stages the nemesis kills: "all", "none", or a comma-separated list of cdc,
	// bubbleup-1, bubbleup-2, deliver, comply. Default: all with WALHOOK_E2E_DURATION set, cdc
	// alone in the short variant, because a SIGKILLed consumer-group member can stall its group
	// until its restart replaces it or its session times out (10 s by default), which the short
	// budget cannot hold.
	envKill = "WALHOOK_E2E_KILL"
	// envKeep is a directory a failed run's directory (stage logs, broker data, bubbleup state,
	// PostgreSQL) is copied into before it is removed; default: not kept. With
	// WALHOOK_E2E_KEEP_ALL=1 a passing run's is kept too.
	envKeep = "WALHOOK_E2E_KEEP"
)

var tenants = []string{"t1", "t2", "t3"} // t3 has no subscription at all

// TestWholeSystem runs every stage as its own process under a seeded kill-and-restart nemesis
// and a seeded incident workload, waits until the pipeline is quiescent and checks the
// guarantees: one snapshot version per source transaction per root (1..n), every version once in
// the compliance log, every matching receiver got every version of its tenant and nothing else,
// and the last snapshot of each live root equals the database.
func TestWholeSystem(t *testing.T) {
	if testing.Short() {
		t.Skip("the whole-system test starts PostgreSQL, a broker and five walhook processes")
	}
	dur := envDur(t, envDuration, 30*time.Second)
	rate := 15.0
	if v := os.Getenv(envRate); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 {
			t.Fatalf("%s=%q: want a positive number of transactions per second", envRate, v)
		}
		rate = r
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(envSeed); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: want an unsigned integer", envSeed, v)
		}
		seed = s
	}
	t.Logf("seed %d (rerun with %s=%d), workload %s at %.0f txn/s per tenant", seed, envSeed, seed, dur, rate)

	sys := startSystem(t, seed)
	sys.waitStreaming(t)

	// Workload and nemesis run side by side for dur; then every stage is started again and the
	// pipeline drains.
	ctx, cancel := context.WithTimeout(t.Context(), dur)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(tenants))
	ledgers := make([]*ledger, len(tenants))
	for i, tenant := range tenants {
		conn := sys.connect(t)
		w := newWriter(conn, tenant, seed+uint64(i)+1)
		ledgers[i] = w.led
		wg.Go(func() { errs <- w.run(ctx, rate) })
	}
	nem := &nemesis{rnd: rand.New(rand.NewPCG(seed, 0x0dd)), procs: sys.procs, targets: killTargets(t, sys.procs), start: time.Now()}
	wg.Go(func() { nem.run(ctx) })
	var bnem *brokerNemesis
	if sys.kafka.apache != nil && len(sys.kafka.apache.Nodes()) > 1 {
		bnem = newBrokerNemesis(t, seed, sys.kafka, []string{sys.cfg.BubbleUpGroup(), sys.cfg.WebhookGroup(), sys.cfg.ComplianceGroup()}, sys.tap)
		wg.Go(func() { bnem.run(ctx) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("workload: %v", err)
		}
	}
	workloadEnd := time.Now()
	for _, p := range sys.procs {
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
	}
	exp := expectations(ledgers, sys.subs)
	sys.quiesce(t, exp, nem)
	drain := time.Since(workloadEnd)

	obs := sys.observe(t)
	rep := &report{t: t, seed: seed, nem: nem, brokerNem: bnem}
	checkSnapshots(rep, exp, obs)
	checkCompliance(rep, exp, obs)
	checkDeliveries(rep, exp, obs, sys.subs)
	checkPayloads(rep, sys, exp, obs, ledgers)
	checkNoCrashes(rep, sys)
	checkNoPoison(t, rep, sys)
	rep.summary(sys, exp, obs, ledgers, dur, drain)
	rep.finish()
}

// killTargets are the stages the nemesis may kill (see envKill).
func killTargets(t *testing.T, procs []*proc) []*proc {
	spec := os.Getenv(envKill)
	if spec == "" {
		spec = "cdc"
		if os.Getenv(envDuration) != "" {
			spec = "all"
		}
	}
	if spec == "all" {
		return procs
	}
	if spec == "none" { // broker faults alone (WALHOOK_TEST_KAFKA=apache3)
		t.Logf("nemesis kills no stage")
		return nil
	}
	var out []*proc
	for _, name := range strings.Split(spec, ",") {
		i := slices.IndexFunc(procs, func(p *proc) bool { return p.name == strings.TrimSpace(name) })
		if i < 0 {
			t.Fatalf("%s=%q: no stage %q; use all or a list of cdc, bubbleup-1, bubbleup-2, deliver, comply", envKill, spec, name)
		}
		out = append(out, procs[i])
	}
	t.Logf("nemesis kills %s", spec)
	return out
}

func envDur(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration such as 5m", name, v)
	}
	return d
}

// system is everything a run starts.
type system struct {
	dir     string
	bin     string
	cfgPath string
	cfg     *config.Config
	pgURL   string
	kafka   *brokers
	procs   []*proc
	subs    []*sub
	tap     *tap
}

func startSystem(t *testing.T, seed uint64) *system {
	s := &system{dir: t.TempDir()}
	if keep := os.Getenv(envKeep); keep != "" {
		// Registered right after TempDir, so it runs after every process and the broker are gone
		// and before the directory is removed.
		t.Cleanup(func() {
			if !t.Failed() && os.Getenv(envKeep+"_ALL") != "1" {
				return
			}
			dst := filepath.Join(keep, fmt.Sprintf("e2e-%d", seed))
			if err := os.MkdirAll(keep, 0o755); err != nil {
				t.Logf("%s: %v", envKeep, err)
				return
			}
			if out, err := exec.Command("cp", "-a", s.dir, dst).CombinedOutput(); err != nil {
				t.Logf("%s: copy %s to %s: %v: %s", envKeep, s.dir, dst, err, out)
				return
			}
			t.Logf("run directory kept in %s", dst)
		})
	}
	built := make(chan error, 1)
	s.bin = filepath.Join(s.dir, "walhook")
	go func() { built <- goBuild(s.bin) }() // in parallel with PostgreSQL's initdb

	pg, err := embedpg.Start(t.Context(), embedpg.Options{Dir: filepath.Join(s.dir, "pg"),
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})
	if err != nil {
		<-built
		t.Fatalf("PostgreSQL: %v", err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	s.pgURL = pg.URL("postgres")
	conn := s.connect(t)
	if _, err := conn.Exec(t.Context(), demo.SchemaSQL); err != nil {
		t.Fatalf("demo schema: %v", err)
	}
	// session.instance belongs to another service: its rows go while incidents point at them.
	if _, err := conn.Exec(t.Context(), `ALTER TABLE incident.instance DROP CONSTRAINT instance_session_instance_id_fkey`); err != nil {
		t.Fatalf("drop the session foreign key: %v", err)
	}
	s.kafka = startBrokers(t, s.dir)
	brokers := s.kafka.addrs
	if err := <-built; err != nil {
		t.Fatal(err)
	}
	s.writeConfig(t, brokers)
	s.subs = subscribe(t, s.bin, s.cfgPath)
	t.Logf("PostgreSQL %s, broker %s, %d subscriptions, binary %s", s.pgURL, brokers, len(s.subs), s.bin)

	args := []string{"--config", s.cfgPath}
	static := s.kafka.static
	s.procs = []*proc{
		newProc(t, s.dir, "cdc", static, s.bin, append([]string{"cdc"}, args...)...),
		newProc(t, s.dir, "bubbleup-1", static, s.bin, append([]string{"bubbleup"}, args...)...),
		newProc(t, s.dir, "bubbleup-2", static, s.bin, append([]string{"bubbleup"}, args...)...),
		newProc(t, s.dir, "deliver", static, s.bin, append([]string{"deliver"}, args...)...),
		newProc(t, s.dir, "comply", static, s.bin, append([]string{"comply"}, args...)...),
	}
	for _, p := range s.procs {
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
	}
	s.tap = startTap(t, s.cfg)
	return s
}

// goBuild builds the walhook binary once per run.
func goBuild(out string) error {
	cmd := exec.Command("go", "build", "-o", out, "github.com/walhook/walhook/cmd/walhook")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/walhook: %v\n%s", err, b)
	}
	return nil
}

func (s *system) connect(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), s.pgURL)
	if err != nil {
		t.Fatalf("connect to PostgreSQL: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// writeConfig writes the one config file every process runs with: the demo model, the
// addresses, loopback receivers allowed, short heartbeats and short Kafka transaction timeouts
// (a SIGKILLed producer's open transaction holds back read_committed readers until it times out).
func (s *system) writeConfig(t *testing.T, brokers string) {
	t.Helper()
	s.cfgPath = filepath.Join(s.dir, "walhook.yaml")
	y := fmt.Sprintf(`postgres:
  url: %q
  publication: walhook
  slot: walhook
kafka:
  brokers: [%s]
  topic_prefix: walhook.
  partitions: 4
  replication_factor: -1
  group_protocol: %s
log:
  level: info
  format: json
cdc:
  heartbeat_interval: 200ms
  status_interval: 100ms
  manage_replica_identity: true
  spill_dir: %q
bubbleup:
  transaction_timeout: 10s
compliance:
  transaction_timeout: 10s
deliver:
  allow_loopback: true
`, s.pgURL, quotedList(strings.Split(brokers, ",")), s.kafka.groupProtocol, filepath.Join(s.dir, "spill"))
	if err := os.WriteFile(s.cfgPath, []byte(y+demo.ModelYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(s.cfgPath)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	cfg.Compliance.SetDefaults(cfg.Kafka)
	s.cfg = cfg
}

// quotedList is a YAML flow list of double-quoted strings.
func quotedList(items []string) string {
	q := make([]string, len(items))
	for i, it := range items {
		q[i] = strconv.Quote(it)
	}
	return strings.Join(q, ", ")
}

// waitStreaming waits until cdc has created the slot and holds it, so every transaction of the
// workload is streamed rather than read by the initial snapshot (which emits no version).
func (s *system) waitStreaming(t *testing.T) {
	t.Helper()
	conn := s.connect(t)
	eventually(t, 90*time.Second, func() error {
		var active bool
		err := conn.QueryRow(t.Context(), `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, s.cfg.Postgres.Slot).Scan(&active)
		if err == nil && !active {
			err = fmt.Errorf("slot %s exists but no cdc streams from it", s.cfg.Postgres.Slot)
		}
		if err != nil {
			return fmt.Errorf("%w\ncdc log:\n%s", err, s.procs[0].logTail(20))
		}
		return nil
	})
}

// sub is one subscription and the receiver it points at.
type sub struct {
	app, uuid, secret string
	tenant, event     string // event in the dotted spelling, incident.instance.updated
	path              string
	recv              *webhooktest.Receiver
}

// subscribe registers two applications with three receivers through `walhook hooks`:
// recvA and recvB both take every event of t1 (two matching receivers per root), recvB also
// takes only the updates of t2, recvC every event of t2; t3 has no subscription, so none of its
// roots may reach any receiver.
func subscribe(t *testing.T, bin, cfgPath string) []*sub {
	t.Helper()
	recvA, recvB, recvC := webhooktest.Start(t), webhooktest.Start(t), webhooktest.Start(t)
	all := []string{"created", "updated", "deleted"}
	plan := []struct {
		app    string
		recv   *webhooktest.Receiver
		tenant string
		verbs  []string
	}{
		{"e2e-a", recvA, "t1", all},
		{"e2e-b", recvB, "t1", all},
		{"e2e-b", recvB, "t2", []string{"updated"}},
		{"e2e-a", recvC, "t2", all},
	}
	apps := map[string]string{}
	var subs []*sub
	for _, p := range plan {
		if apps[p.app] == "" {
			apps[p.app] = cliField(t, walhook(t, bin, "hooks", "register-app", "--config", cfgPath, "--name", p.app), "id")
		}
		for _, v := range p.verbs {
			event := "incident.instance." + v
			path := "/" + p.app + "/" + p.tenant + "/" + v
			// The config carries the model the event is checked against and allow_loopback
			// for the loopback receivers.
			out := walhook(t, bin, "hooks", "subscribe", "--config", cfgPath, "--app", apps[p.app], "--tenant", p.tenant,
				"--event", event, "--url", p.recv.URL()+path)
			subs = append(subs, &sub{app: p.app, uuid: cliField(t, out, "uuid"), secret: cliField(t, out, "secret"),
				tenant: p.tenant, event: event, path: path, recv: p.recv})
		}
	}
	return subs
}

func walhook(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("walhook %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// cliField is the value of a "name: value" line of a hooks command's output.
func cliField(t *testing.T, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `: (\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q line in:\n%s", name, out)
	}
	return m[1]
}

// nemesis SIGKILLs a random stage every 1.5-4 s and starts it again 0.2-1.5 s later.
type nemesis struct {
	rnd     *rand.Rand
	procs   []*proc // every stage: any that is down is started again
	targets []*proc // the stages it kills
	start   time.Time

	mu     sync.Mutex
	events []string // guarded by mu; "12.345s kill cdc"
}

func (n *nemesis) run(ctx context.Context) {
	for {
		if !n.wait(ctx, 1500+n.rnd.IntN(2500)) {
			return
		}
		if len(n.targets) > 0 {
			p := n.targets[n.rnd.IntN(len(n.targets))]
			n.log("kill " + p.name)
			p.kill()
		}
		down := n.wait(ctx, 200+n.rnd.IntN(1300))
		for _, q := range n.procs { // also revives a stage that died by itself
			if !q.running() {
				n.log("start " + q.name)
				if err := q.start(); err != nil {
					n.log(err.Error())
				}
			}
		}
		if !down {
			return
		}
	}
}

// wait waits ms milliseconds; false when ctx ended first.
func (n *nemesis) wait(ctx context.Context, ms int) bool {
	return sleepCtx(ctx, time.Duration(ms)*time.Millisecond)
}

func (n *nemesis) log(what string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.events = append(n.events, fmt.Sprintf("%7.3fs %s", time.Since(n.start).Seconds(), what))
}

func (n *nemesis) String() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.events, "\n")
}

// near lists the nemesis events within 5 s of at, for failure reports.
func (n *nemesis) near(at time.Time) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	rel := at.Sub(n.start).Seconds()
	var out []string
	for _, e := range n.events {
		var s float64
		if _, err := fmt.Sscanf(strings.TrimSpace(e), "%fs", &s); err == nil && s > rel-5 && s < rel+5 {
			out = append(out, e)
		}
	}
	return fmt.Sprintf("nemesis around %.3fs: [%s]", rel, strings.Join(out, "; "))
}

// quiesce waits until the pipeline has nothing left to do: the slot confirmed everything the
// workload wrote, and then `walhook status` shows every group stable and caught up (a lag of at
// most one transaction marker per partition), nothing undelivered, no retry backlog, while the
// outputs stop changing.
func (s *system) quiesce(t *testing.T, exp *expected, nem *nemesis) {
	t.Helper()
	conn := s.connect(t)
	var target string
	if err := conn.QueryRow(t.Context(), `SELECT pg_current_wal_lsn()::text`).Scan(&target); err != nil {
		t.Fatal(err)
	}
	timeout := 4 * time.Minute
	s.eventuallyAlive(t, timeout, func() error {
		var ok bool
		var confirmed *string
		err := conn.QueryRow(t.Context(), `SELECT confirmed_flush_lsn >= $2::pg_lsn, confirmed_flush_lsn::text
			FROM pg_replication_slots WHERE slot_name = $1`, s.cfg.Postgres.Slot, target).Scan(&ok, &confirmed)
		if err == nil && !ok {
			err = fmt.Errorf("slot confirmed_flush_lsn %v < final pg_current_wal_lsn %s", deref(confirmed), target)
		}
		return err
	})
	// Quiescent: caught up, and the outputs either reached the expected totals or have not
	// changed for stableFor (then the checks say what is missing).
	const stableFor = 3 * time.Second
	var last counts
	changed := time.Now()
	s.eventuallyAlive(t, timeout, func() error {
		if err := s.caughtUp(t); err != nil {
			return err
		}
		now := s.outputCounts()
		if now != last {
			last, changed = now, time.Now()
		}
		if now.reached(exp) || time.Since(changed) >= stableFor {
			return nil
		}
		return fmt.Errorf("outputs %s, expected %s", now, exp)
	})
	t.Logf("quiescent: %s (expected %s)", last, exp)
	t.Logf("nemesis:\n%s", nem.String())
}

// eventuallyAlive is eventually that keeps every stage running: a stage that died by itself
// during the drain is started again (and counted as a crash).
func (s *system) eventuallyAlive(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	eventually(t, timeout, func() error {
		for _, p := range s.procs {
			if !p.running() {
				if err := p.start(); err != nil {
					return err
				}
			}
		}
		return fn()
	})
}

// counts are the sizes of the outputs: snapshot and compliance log records our readers saw,
// and requests the receivers got.
type counts struct{ snapshots, compliance, requests int }

func (c counts) String() string {
	return fmt.Sprintf("snapshots=%d compliance=%d requests=%d", c.snapshots, c.compliance, c.requests)
}

func (c counts) reached(e *expected) bool {
	return c.snapshots == e.versions && c.compliance == e.versions && c.requests >= e.deliveries
}

func (s *system) outputCounts() counts {
	var c counts
	c.snapshots, c.compliance = s.tap.counts()
	seen := map[*webhooktest.Receiver]bool{} // receivers are shared between subscriptions
	for _, sb := range s.subs {
		if !seen[sb.recv] {
			seen[sb.recv] = true
			c.requests += sb.recv.Count()
		}
	}
	return c
}

// caughtUp runs `walhook status --json` and says what is still behind.
func (s *system) caughtUp(t *testing.T) error {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, s.bin, "status", "--json", "--timeout", "2s", "--config", s.cfgPath).Output()
	var r status.Report
	if err := json.Unmarshal(out, &r); err != nil {
		return fmt.Errorf("walhook status --json: %v: %s", err, out)
	}
	var behind []string
	if len(r.Errors) > 0 {
		behind = append(behind, r.Errors...)
	}
	for _, g := range r.Groups {
		if g.State != "Stable" {
			behind = append(behind, fmt.Sprintf("group %s is %s", g.Group, g.State))
		}
		for _, tl := range g.Topics {
			if tl.Lag > int64(tl.Partitions) {
				behind = append(behind, fmt.Sprintf("group %s lags %d on %s", g.Group, tl.Lag, tl.Topic))
			}
		}
	}
	for _, tl := range r.RetryBacklog {
		if tl.Lag > 0 {
			behind = append(behind, fmt.Sprintf("retry backlog %d on %s", tl.Lag, tl.Topic))
		}
	}
	if r.OldestUndelivered != nil {
		behind = append(behind, fmt.Sprintf("undelivered %s[%d]@%d", r.OldestUndelivered.Topic, r.OldestUndelivered.Partition, r.OldestUndelivered.Offset))
	}
	if len(behind) > 0 {
		return fmt.Errorf("not caught up: %s", strings.Join(behind, "; "))
	}
	return nil
}

// eventually calls fn until it returns nil, failing the test with fn's last error at the
// deadline. The wait between calls grows from 50 ms to 1 s.
func eventually(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	start := time.Now()
	deadline, progress := start.Add(timeout), start.Add(10*time.Second)
	wait := 50 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(progress) {
			t.Logf("after %s: %v", time.Since(start).Round(time.Second), err)
			progress = time.Now().Add(10 * time.Second)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not reached within %v: %v", timeout, err)
		}
		tm := time.NewTimer(wait)
		select {
		case <-t.Context().Done():
			tm.Stop()
			t.Fatalf("test ended while waiting: %v", err)
		case <-tm.C:
		}
		wait = min(2*wait, time.Second)
	}
}

func deref(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}

// jsonEqual compares two JSON documents by value.
func jsonEqual(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}
