package pipeline

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/kafkatest"
)

// TestChangesBeforeInitialReadEmitNothing: roots that existed before the slot are changed
// before their initial-snapshot chunk is read (a timeline row of one, the root row of the
// other). Those transactions only build state (counted as orphan changes); the chunk's reads
// and its read transaction ends complete the state silently; the first change after the read
// emits version 1, complete.
func TestChangesBeforeInitialReadEmitNothing(t *testing.T) {
	env := kafkatest.Start(t)
	cfg := testConfig(t, env, demoModel)
	reg := testRegistry(t, env)
	cdc := newFakeCDC(t, env, cfg, reg, demoTables)
	prom := prometheus.NewRegistry()
	runStage(t, cfg, reg, WithRegisterer(prom))

	sess := seedSession()
	inc7, inc8 := seedIncident(), seedIncident()
	inc7["id"], inc8["id"] = "7", "8"
	tl := func(id, action string) map[string]string {
		return map[string]string{"id": id, "incident_instance_id": "7", "action": action, "is_deleted": "f", "tenant_id": "acme",
			"created_at": "2026-02-03 10:51:23.26+00", "updated_at": "2026-02-03 10:51:23.26+00"}
	}
	cdc.txn(change{table: "session.instance", op: avro.OpRead, key: "2523", after: sess})
	// Streamed before the roots' chunk: a timeline change of root 7, a root update of root 8.
	cdc.txn(change{table: "incident.timeline", op: avro.OpUpdate, key: "7", after: tl("1", "COMMENTED")})
	upd8 := seedIncident()
	upd8["id"], upd8["status"] = "8", "RESOLVED"
	cdc.txn(change{table: "incident.instance", op: avro.OpUpdate, key: "8", after: upd8})

	// The chunk: roots 7 and 8 with their timeline rows at one LSN, then one read TxnEnd each
	// (root 8's row is left to the stream, which changed it inside the window).
	cdc.lsn += 0x100
	cdc.xid++
	recs := cdc.records(cdc.lsn, cdc.xid,
		change{table: "incident.instance", op: avro.OpRead, key: "7", after: inc7},
		change{table: "incident.timeline", op: avro.OpRead, key: "7", after: tl("1", "COMMENTED")},
		change{table: "incident.timeline", op: avro.OpRead, key: "7", after: tl("2", "DETECTED")},
		change{table: "incident.timeline", op: avro.OpRead, key: "8", after: map[string]string{
			"id": "3", "incident_instance_id": "8", "action": "DETECTED", "is_deleted": "f", "tenant_id": "acme"}},
	)
	for _, r := range recs {
		if header(r, headerKind) == "txn-end" {
			r.Headers = headers("txn-end", "incident.instance", "read", cdc.lsn)
		}
	}
	if err := cdc.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// First changes after the read: one snapshot each, version 1, complete.
	up7 := seedIncident()
	up7["id"], up7["severity"] = "7", "HIGH"
	cdc.txn(change{table: "incident.instance", op: avro.OpUpdate, key: "7", after: up7})
	cdc.txn(change{table: "incident.timeline", op: avro.OpCreate, key: "8", after: map[string]string{
		"id": "4", "incident_instance_id": "8", "action": "ESCALATED", "is_deleted": "f", "tenant_id": "acme"}})

	snaps := snapshots(t, env, reg, cfg.Kafka.SnapshotTopic(cfg.Model.Roots[0]), 2)
	if len(snaps) != 2 {
		t.Fatalf("got %d snapshots, want 2", len(snaps))
	}
	wantTimeline := map[string]int{"7": 2, "8": 2}
	for _, s := range snaps {
		if s.Version != 1 || s.Verb != avro.VerbUpdated {
			t.Fatalf("root %s: v%d %s, want v1 updated (changes before the read emit nothing)", s.Key, s.Version, s.Verb)
		}
		p := mustJSON(t, s.Payload).(map[string]any)
		if tl, _ := p["timeline"].([]any); len(tl) != wantTimeline[s.Key] || p["status"] == nil {
			t.Fatalf("root %s: payload incomplete: %s", s.Key, s.Payload)
		}
		if s.Key == "8" && p["status"] != "RESOLVED" {
			t.Fatalf("root 8 lost its streamed update: %s", s.Payload)
		}
	}
	if n := counterValue(t, prom, "walhook_bubbleup_orphan_changes_total"); n != 2 {
		t.Fatalf("walhook_bubbleup_orphan_changes_total = %v, want 2", n)
	}
}

func counterValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) == 1 {
			return mf.Metric[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
