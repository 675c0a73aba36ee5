package pipeline

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/kafkatest"
)

// workload drives random transactions over a set of incidents through a fakeCDC and counts the
// snapshots each root must get.
type workload struct {
	cdc      *fakeCDC
	rng      *rand.Rand
	created  map[int]bool
	expected map[string]int
	nextTL   int
	past     [][]change // sent transactions, for replays
	pastLSN  []uint64
}

func newWorkload(cdc *fakeCDC, seed uint64) *workload {
	return &workload{cdc: cdc, rng: rand.New(rand.NewPCG(seed, 1)), created: map[int]bool{}, expected: map[string]int{}, nextTL: 1}
}

func (w *workload) incident(id int, status string) map[string]string {
	m := seedIncident()
	m["id"] = strconv.Itoa(id)
	m["status"] = status
	m["tenant_id"] = "t" + strconv.Itoa(id%3)
	return m
}

// step writes one transaction touching 1–3 of roots incidents.
func (w *workload) step(roots int) {
	var cs []change
	touched := map[int]bool{}
	for range 1 + w.rng.IntN(3) {
		id := 1 + w.rng.IntN(roots)
		key := strconv.Itoa(id)
		switch {
		case !w.created[id]:
			w.created[id] = true
			cs = append(cs, change{table: "incident.instance", op: avro.OpCreate, key: key, after: w.incident(id, "TRIGGERED")})
		case w.rng.IntN(2) == 0:
			cs = append(cs, change{table: "incident.instance", op: avro.OpUpdate, key: key, after: w.incident(id, []string{"RESOLVED", "REOPENED", "DISMISSED"}[w.rng.IntN(3)])})
		default:
			w.nextTL++
			cs = append(cs, change{table: "incident.timeline", op: avro.OpCreate, key: key, after: map[string]string{
				"id": strconv.Itoa(w.nextTL), "incident_instance_id": key, "action": "COMMENTED",
				"created_at": "2026-02-03 10:51:23.26+00", "created_by": "0", "updated_at": "2026-02-03 10:51:23.26+00",
				"updated_by": "0", "is_deleted": "f", "tenant_id": "t"}})
		}
		touched[id] = true
	}
	for id := range touched {
		w.expected[strconv.Itoa(id)]++
	}
	lsn := w.cdc.txn(cs...)
	w.past = append(w.past, cs)
	w.pastLSN = append(w.pastLSN, lsn)
}

// replay re-sends the last n transactions with their original LSNs, as CDC does after a restart.
func (w *workload) replay(n int) {
	for i := max(0, len(w.past)-n); i < len(w.past); i++ {
		w.cdc.txnAt(w.pastLSN[i], 1, w.past[i]...)
	}
}

func (w *workload) total() int {
	n := 0
	for _, c := range w.expected {
		n += c
	}
	return n
}

func (w *workload) check(t *testing.T, snaps []avro.Snapshot) {
	t.Helper()
	last := checkVersions(t, snaps)
	if len(snaps) != w.total() {
		t.Fatalf("got %d snapshots, want %d", len(snaps), w.total())
	}
	for key, n := range w.expected {
		if last[key].Version != int64(n) {
			t.Fatalf("root %s: last version %d, want %d", key, last[key].Version, n)
		}
	}
}

// TestRestartMidStream stops the only member mid-stream and starts a new one in the same group;
// CDC then replays transactions it had already written. Every root's versions are 1..n exactly once.
func TestRestartMidStream(t *testing.T) {
	env := kafkatest.Start(t)
	cfg := testConfig(t, env, demoModel)
	reg := testRegistry(t, env)
	cdc := newFakeCDC(t, env, cfg, reg, demoTables)
	w := newWorkload(cdc, 42)
	cdc.txn(change{table: "session.instance", op: avro.OpCreate, key: "2523", after: seedSession()})

	stop := runStage(t, cfg, reg)
	for range 150 {
		w.step(30)
	}
	topic := cfg.Kafka.SnapshotTopic(cfg.Model.Roots[0])
	snapshots(t, env, reg, topic, w.total()/3) // some are out: stop mid-stream
	if err := stop(); err != nil {
		t.Fatalf("first member: %v", err)
	}
	for range 150 {
		w.step(30)
	}
	runStage(t, cfg, reg)
	w.replay(40)
	for range 50 {
		w.step(30)
	}
	w.check(t, snapshots(t, env, reg, topic, w.total()))
}

// TestKillMemberWithSecondRunning runs two members; one is stopped mid-load and the other takes
// its partitions over, restoring their state.
func TestKillMemberWithSecondRunning(t *testing.T) {
	env := kafkatest.Start(t)
	cfg := testConfig(t, env, demoModel)
	reg := testRegistry(t, env)
	cdc := newFakeCDC(t, env, cfg, reg, demoTables)
	w := newWorkload(cdc, 7)
	cdc.txn(change{table: "session.instance", op: avro.OpCreate, key: "2523", after: seedSession()})

	stopA := runStage(t, cfg, reg)
	runStage(t, cfg, reg)
	topic := cfg.Kafka.SnapshotTopic(cfg.Model.Roots[0])
	for range 150 {
		w.step(40)
	}
	snapshots(t, env, reg, topic, w.total()/2)
	if err := stopA(); err != nil {
		t.Fatalf("member A: %v", err)
	}
	for range 150 {
		w.step(40)
	}
	start := time.Now()
	w.check(t, snapshots(t, env, reg, topic, w.total()))
	t.Logf("caught up %v after the kill", time.Since(start))
}
