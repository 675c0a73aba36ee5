package pipeline

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/kafkatest"
)

// TestRestore100kRoots restores one partition holding 100,000 roots from the changelog and checks
// the state is there and the restore took seconds. BenchmarkRestore100k reports the figures.
func TestRestore100kRoots(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 100,000 changelog records")
	}
	took := restoreRoots(t, 100_000, nil)
	t.Logf("restored 100000 roots in %v (%.0f roots/s)", took, 100_000/took.Seconds())
	if took > 30*time.Second {
		t.Fatalf("restore took %v; it must take seconds", took)
	}
}

// restoreStage is a stage with its topics and state store, not running: a test drives one of
// its partition workers directly.
func restoreStage(tb testing.TB) (*kafkatest.Env, *Stage) {
	tb.Helper()
	env := kafkatest.Start(tb)
	s, err := New(testConfig(tb, env, demoModel), WithRegistry(testRegistry(tb, env)))
	if err != nil {
		tb.Fatal(err)
	}
	s.admin = kafkatest.Client(tb, env)
	if _, err := s.ensureTopics(context.Background()); err != nil {
		tb.Fatal(err)
	}
	closeDB, err := s.openState()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = closeDB() })
	return env, s
}

// restoreRoots writes roots changelog records to partition 0 (an incident with three timeline
// rows each, ~1.5 KiB of state), restores the partition into a fresh worker, checks every root
// is there and returns how long the restore took. beforeRestore, when set, runs just before it
// (a benchmark starts its timer there).
func restoreRoots(tb testing.TB, roots int, beforeRestore func()) time.Duration {
	tb.Helper()
	env, s := restoreStage(tb)
	ctx := context.Background()
	st := sampleState(tb)
	val, err := encodeState(st)
	if err != nil {
		tb.Fatal(err)
	}
	prod := kafkatest.Client(tb, env, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond))
	rm := s.roots[0]
	for i := range roots {
		prod.Produce(ctx, &kgo.Record{Topic: s.changelog, Partition: 0, Key: changelogKey(rm.cfg.EventPrefix, strconv.Itoa(i)), Value: val}, nil)
	}
	if err := prod.Flush(ctx); err != nil {
		tb.Fatal(err)
	}

	w := s.startWorker(rm, 0)
	defer w.stop()
	if beforeRestore != nil {
		beforeRestore()
	}
	start := time.Now()
	w.do(func() { err = w.restore(ctx) })
	took := time.Since(start)
	if err != nil {
		tb.Fatal(err)
	}
	if w.roots != int64(roots) {
		tb.Fatalf("restored %d roots, want %d", w.roots, roots)
	}
	var got *rootState
	last := strconv.Itoa(roots - 1)
	w.do(func() {
		w.overlay = map[string]*rootState{}
		got, err = w.state(last)
	})
	if err != nil || got.Version != st.Version || len(got.Subs["incident.timeline"]) != 3 {
		tb.Fatalf("restored root %s = %+v, %v", last, got, err)
	}
	return took
}

func sampleState(t testing.TB) *rootState {
	t.Helper()
	img := func(table string, vals map[string]string) *avro.Row {
		r := &avro.Row{}
		for _, c := range demoTables[table] {
			r.Columns = append(r.Columns, c.name)
			if v, ok := vals[c.name]; ok {
				r.Values = append(r.Values, v)
			} else {
				r.Values = append(r.Values, nil)
			}
		}
		return r
	}
	st := &rootState{Version: 7, Applied: 0x1000, Root: rowFrom(&tableModel{}, img("incident.instance", seedIncident()), nil, nil),
		Subs: map[string]map[string]*row{"incident.timeline": {}}}
	for i := range 3 {
		k := strconv.Itoa(i)
		st.Subs["incident.timeline"][k] = rowFrom(&tableModel{}, img("incident.timeline", map[string]string{"id": k, "incident_instance_id": "1",
			"action": "COMMENTED", "description": "Auto-escalated after 5 minutes without face detection."}), nil, nil)
	}
	return st
}

// TestRestoreWaitsForOpenChangelogTransaction: a previous owner killed inside a transaction left
// it open in the changelog, and the next owner committed a transaction above it. A restore must
// not stop at the last stable offset (it would miss the committed root and rebuild stale
// state): it waits until the open transaction ends, then restores everything committed.
func TestRestoreWaitsForOpenChangelogTransaction(t *testing.T) {
	env, s := restoreStage(t)
	ctx := context.Background()
	val, err := encodeState(sampleState(t))
	if err != nil {
		t.Fatal(err)
	}
	rm := s.roots[0]
	owner := func(id, root string) *kgo.Client {
		cl := kafkatest.Client(t, env, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionalID(id))
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		rec := &kgo.Record{Topic: s.changelog, Partition: 0, Key: changelogKey(rm.cfg.EventPrefix, root), Value: val}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
		return cl
	}
	dead := owner("killed-owner", "lost") // stays open: its process is gone
	next := owner("next-owner", "kept")
	if err := next.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}

	w := s.startWorker(rm, 0)
	defer w.stop()
	done := make(chan error, 1)
	go w.do(func() { done <- w.restore(ctx) })
	select {
	case err := <-done:
		t.Fatalf("restore returned (err %v, %d roots) while a transaction below a committed one is open", err, w.roots)
	case <-time.After(time.Second):
	}
	if err := dead.EndTransaction(ctx, kgo.TryAbort); err != nil { // the broker's transaction timeout, sooner
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("restore still waits after the open transaction was aborted")
	}
	if w.roots != 1 {
		t.Fatalf("restored %d roots, want 1 (the committed one)", w.roots)
	}
}
