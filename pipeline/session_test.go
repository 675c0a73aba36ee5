package pipeline

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/kafkatest"
)

// TestFailedEndReplacesSession: the broker refuses two commits with an error franz-go does not
// retry (as when a transaction coordinator fails over mid-commit). The stage replaces its group
// session in process rather than exiting, and every root still gets versions 1..n exactly once.
func TestFailedEndReplacesSession(t *testing.T) {
	// On a real broker the same failure comes from a failover, which the whole-system test
	// injects (internal/e2e, WALHOOK_TEST_KAFKA=apache3) and where no stage may exit by itself.
	env := kafkatest.Start(t)
	cluster := env.RequireCluster(t)
	cfg := testConfig(t, env, demoModel)
	reg := testRegistry(t, env)
	cdc := newFakeCDC(t, env, cfg, reg, demoTables)
	w := newWorkload(cdc, 11)
	cdc.txn(change{table: "session.instance", op: avro.OpCreate, key: "2523", after: seedSession()})

	promReg := prometheus.NewRegistry()
	stop := runStage(t, cfg, reg, WithRegisterer(promReg))
	topic := cfg.Kafka.SnapshotTopic(cfg.Model.Roots[0])
	for range 60 {
		w.step(25)
	}
	snapshots(t, env, reg, topic, w.total()/2)
	refusals := kafkatest.RefuseCommits(cluster, 2)
	for range 60 {
		w.step(25)
	}
	w.check(t, snapshots(t, env, reg, topic, w.total()))
	if err := stop(); err != nil {
		t.Fatalf("stage exited: %v", err)
	}
	if n := refusals.Load(); n != 2 {
		t.Fatalf("the broker refused %d commits, want 2", n)
	}
	if v := counterValue(t, promReg, "walhook_bubbleup_session_restarts_total"); v != 2 {
		t.Fatalf("session restarts %v, want 2 (one per refused commit)", v)
	}
}
