package compliance_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/kafkatest"
	"github.com/walhook/walhook/sinks/compliance"
)

// TestFailedEndReplacesSession: the broker refuses two commits with an error franz-go does not
// retry (as when a transaction coordinator fails over mid-commit). The sink replaces its group
// session in process rather than exiting, and every version lands exactly once in both topics.
func TestFailedEndReplacesSession(t *testing.T) {
	h := newHarness(t, demo.ModelYAML)
	cluster := h.env.RequireCluster(t)
	refusals := kafkatest.RefuseCommits(cluster, 2)
	const roots, versions = 30, 4
	h.produce(load(roots, versions)...)
	prom := prometheus.NewRegistry()
	stop, _ := h.run(compliance.WithMaxPollRecords(10), compliance.WithRegisterer(prom))
	h.checkExactlyOnce(h.logTopic(), roots, versions)
	if err := stop(); err != nil {
		t.Fatalf("sink exited: %v", err)
	}
	if n := refusals.Load(); n != 2 {
		t.Fatalf("the broker refused %d commits, want 2", n)
	}
	mfs, err := prom.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var restarts float64
	for _, mf := range mfs {
		if mf.GetName() == "walhook_compliance_session_restarts_total" {
			restarts = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if restarts != 2 {
		t.Fatalf("session restarts %v, want 2 (one per refused commit)", restarts)
	}
}
