package pipeline

import (
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/kafkatest"
)

// TestFailedEndReplacesSession: the broker refuses two EndTxn requests with an error franz-go
// does not retry (as when a transaction coordinator fails over mid-commit). The stage replaces
// its group session in process rather than exiting, and every root still gets versions 1..n
// exactly once.
func TestFailedEndReplacesSession(t *testing.T) {
	env := kafkatest.Start(t)
	cluster := env.RequireCluster(t)
	cfg := testConfig(t, env, demoModel)
	reg := testRegistry(t, env)
	cdc := newFakeCDC(t, env, cfg, reg, demoTables)
	w := newWorkload(cdc, 11)
	cdc.txn(change{table: "session.instance", op: avro.OpCreate, key: "2523", after: seedSession()})

	var refusals atomic.Int32
	cluster.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if r := req.(*kmsg.EndTxnRequest); !r.Commit || refusals.Load() >= 2 {
			return nil, nil, false
		}
		refusals.Add(1)
		resp := req.(*kmsg.EndTxnRequest).ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.InvalidTxnState.Code
		return resp, nil, true
	})
	promReg := prometheus.NewRegistry()
	stop := runStage(t, cfg, reg, WithRegisterer(promReg))
	for range 120 {
		w.step(25)
	}
	topic := cfg.Kafka.SnapshotTopic(cfg.Model.Roots[0])
	w.check(t, snapshots(t, env, reg, topic, w.total()))
	if n := refusals.Load(); n != 2 {
		t.Fatalf("the broker refused %d commits, want 2", n)
	}
	if err := stop(); err != nil {
		t.Fatalf("stage exited: %v", err)
	}
	if v := counterValue(t, promReg, "walhook_bubbleup_session_restarts_total"); v != 2 {
		t.Fatalf("session restarts %v, want 2 (one per refused commit)", v)
	}
}
