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

// TestRestore100kRoots measures restoring one partition holding 100,000 roots (an incident with
// three timeline rows each, ~1.5 KiB of state) from the changelog, and checks the state is there.
func TestRestore100kRoots(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 100,000 changelog records")
	}
	const roots = 100_000
	env := kafkatest.Start(t)
	cfg := testConfig(t, env, demoModel)
	s, err := New(cfg, WithRegistry(testRegistry(t, env)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s.admin = kafkatest.Client(t, env)
	if _, err := s.ensureTopics(ctx); err != nil {
		t.Fatal(err)
	}
	closeDB, err := s.openState()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeDB() })

	st := sampleState(t)
	val, err := encodeState(st)
	if err != nil {
		t.Fatal(err)
	}
	prod := kafkatest.Client(t, env, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond))
	rm := s.roots[0]
	start := time.Now()
	for i := range roots {
		prod.Produce(ctx, &kgo.Record{Topic: s.changelog, Partition: 0, Key: changelogKey(rm.cfg.EventPrefix, strconv.Itoa(i)), Value: val}, nil)
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d changelog records (%d bytes each) in %v", roots, len(val), time.Since(start))

	w := s.startWorker(rm, 0)
	defer w.stop()
	start = time.Now()
	w.do(func() { err = w.restore(ctx) })
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restored %d roots in %v (%.0f roots/s)", w.roots, took, float64(w.roots)/took.Seconds())
	if w.roots != roots {
		t.Fatalf("restored %d roots, want %d", w.roots, roots)
	}
	if took > 30*time.Second {
		t.Fatalf("restore took %v; it must take seconds", took)
	}
	var got *rootState
	w.do(func() {
		w.overlay = map[string]*rootState{}
		got, err = w.state("99999")
	})
	if err != nil || got.Version != st.Version || len(got.Subs["incident.timeline"]) != 3 {
		t.Fatalf("restored root 99999 = %+v, %v", got, err)
	}
}

func sampleState(t *testing.T) *rootState {
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
	st := &rootState{Version: 7, Applied: 0x1000, Root: rowFrom(img("incident.instance", seedIncident()), nil, nil),
		Subs: map[string]map[string]*row{"incident.timeline": {}}}
	for i := range 3 {
		k := strconv.Itoa(i)
		st.Subs["incident.timeline"][k] = rowFrom(img("incident.timeline", map[string]string{"id": k, "incident_instance_id": "1",
			"action": "COMMENTED", "description": "Auto-escalated after 5 minutes without face detection."}), nil, nil)
	}
	return st
}
