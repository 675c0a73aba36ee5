package pipeline

import (
	"encoding/json"
	"testing"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/kafkatest"
)

// seedPayload is the v2 payload of the contract's seed (seed-incident-instance-updated.txt).
const seedPayload = `{
  "id": 134, "name": "Face not detected", "description": null, "status": "RESOLVED", "severity": "LOW",
  "start_time": "2026-02-03T10:46:23.260Z", "end_time": "2026-02-03T11:15:00.000Z",
  "resolution_notes": "Confirmed candidate was adjusting camera. No violation.",
  "session_instance_id": 2523, "external_id": null,
  "created_at": "2026-02-03T09:57:55.341Z", "created_by": 1, "updated_at": "2026-02-03T11:15:00.000Z", "updated_by": 1,
  "session": {"id": 2523, "uuid": "019c22ef-edc6-765d-9ab3-c2acf41b5253", "score": 85, "status": "COMPLETED",
    "created_at": "2026-02-03T09:57:55.341Z", "updated_at": "2026-02-03T11:15:00.000Z"},
  "timeline": [{"id": 1, "action": "ESCALATED", "description": "Auto-escalated after 5 minutes without face detection.",
    "created_at": "2026-02-03T10:51:23.260Z", "created_by": 0, "updated_at": "2026-02-03T10:51:23.260Z", "updated_by": 0}]
}`

func seedIncident() map[string]string {
	return map[string]string{
		"id": "134", "name": "Face not detected", "status": "TRIGGERED", "severity": "LOW",
		"start_time": "2026-02-03 10:46:23.26+00", "session_instance_id": "2523",
		"created_at": "2026-02-03 09:57:55.341+00", "created_by": "1", "updated_at": "2026-02-03 09:57:55.341+00",
		"updated_by": "1", "tenant_id": "acme", "is_deleted": "f",
	}
}

func seedSession() map[string]string {
	return map[string]string{
		"id": "2523", "uuid": "019c22ef-edc6-765d-9ab3-c2acf41b5253", "score": "85", "status": "IN_PROGRESS",
		"created_at": "2026-02-03 09:57:55.341+00", "updated_at": "2026-02-03 09:57:55.341+00", "tenant_id": "acme",
	}
}

// TestSeedStoryFakeCDC runs the contract's seed story through change records written the way
// CDC writes them: created v1 with an empty timeline, then one updated v2 for the transaction
// that resolves the incident, adds an ESCALATED timeline row, completes the session and touches
// updated_at, with exactly the seed's payload.
func TestSeedStoryFakeCDC(t *testing.T) {
	env := kafkatest.Start(t)
	cfg := testConfig(t, env, demoModel)
	reg := testRegistry(t, env)
	cdc := newFakeCDC(t, env, cfg, reg, demoTables)
	runStage(t, cfg, reg)

	inc := seedIncident()
	cdc.txn(
		change{table: "session.instance", op: avro.OpCreate, key: "2523", after: seedSession()},
		change{table: "incident.instance", op: avro.OpCreate, key: "134", after: inc},
	)
	resolved := seedIncident()
	resolved["status"] = "RESOLVED"
	resolved["end_time"] = "2026-02-03 11:15:00+00"
	resolved["resolution_notes"] = "Confirmed candidate was adjusting camera. No violation."
	touched := seedIncident()
	for k, v := range resolved {
		touched[k] = v
	}
	touched["updated_at"] = "2026-02-03 11:15:00+00"
	done := seedSession()
	done["status"] = "COMPLETED"
	done["updated_at"] = "2026-02-03 11:15:00+00"
	cdc.txn(
		change{table: "incident.instance", op: avro.OpUpdate, key: "134", after: resolved},
		change{table: "incident.timeline", op: avro.OpCreate, key: "134", after: map[string]string{
			"id": "1", "incident_instance_id": "134", "action": "ESCALATED",
			"description": "Auto-escalated after 5 minutes without face detection.",
			"created_at":  "2026-02-03 10:51:23.26+00", "created_by": "0", "updated_at": "2026-02-03 10:51:23.26+00",
			"updated_by": "0", "is_deleted": "f", "tenant_id": "acme"}},
		change{table: "incident.instance", op: avro.OpUpdate, key: "134", after: touched},
		change{table: "session.instance", op: avro.OpUpdate, key: "2523", after: done},
	)

	snaps := snapshots(t, env, reg, cfg.Kafka.SnapshotTopic(cfg.Model.Roots[0]), 2)
	checkVersions(t, snaps)
	if len(snaps) != 2 {
		t.Fatalf("got %d snapshots, want 2", len(snaps))
	}
	v1, v2 := snaps[0], snaps[1]
	if v1.Verb != avro.VerbCreated || v1.EventType != "incident_instance_created" || v1.Tenant != "acme" || v1.RootType != "incident.instance" {
		t.Fatalf("v1 = %+v", v1)
	}
	p1 := mustJSON(t, v1.Payload).(map[string]any)
	if tl, ok := p1["timeline"].([]any); !ok || len(tl) != 0 {
		t.Fatalf("v1 timeline = %v, want []", p1["timeline"])
	}
	if v2.Verb != avro.VerbUpdated || v2.EventType != "incident_instance_updated" {
		t.Fatalf("v2 = %+v", v2)
	}
	if err := sameShape("$", mustJSON(t, []byte(seedPayload)), mustJSON(t, v2.Payload)); err != nil {
		t.Fatalf("v2 payload differs from the seed: %v\n%s", err, v2.Payload)
	}
	// Field order: table columns, references, arrays.
	var ordered json.RawMessage = v2.Payload
	if want := `{"id":134,"name":"Face not detected","description":null,"status":"RESOLVED"`; string(ordered[:len(want)]) != want {
		t.Fatalf("payload does not start with the table's columns in order:\n%s", ordered)
	}
}
