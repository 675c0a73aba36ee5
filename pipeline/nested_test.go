package pipeline

import (
	"testing"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/kafkatest"
)

const candidateModel = `
model:
  roots:
    - table: talent.candidate
      event_prefix: talent.candidate
      key: id
      snapshot_form: old_new
      subordinates:
        - table: talent.project
          parent_column: candidate_id
          array: projects
          order_by: started_on
          subordinates:
            - table: talent.technology
              parent_column: project_id
              array: technologies
`

var candidateTables = map[string][]col{
	"talent.candidate":  {{"id", "int8"}, {"name", "text"}, {"score", "numeric"}, {"profile", "jsonb"}, {"tenant_id", "text"}, {"is_deleted", "bool"}},
	"talent.project":    {{"id", "int8"}, {"candidate_id", "int8"}, {"title", "text"}, {"started_on", "date"}, {"tenant_id", "text"}, {"is_deleted", "bool"}},
	"talent.technology": {{"id", "int8"}, {"project_id", "int8"}, {"name", "text"}, {"tenant_id", "text"}, {"is_deleted", "bool"}},
}

// TestNestedRootFromConfig runs a second root type with nested subordinates (a candidate's
// projects, each with technologies) and snapshot form old_new, from configuration alone.
func TestNestedRootFromConfig(t *testing.T) {
	env := kafkatest.Start(t)
	cfg := testConfig(t, env, candidateModel)
	reg := testRegistry(t, env)
	cdc := newFakeCDC(t, env, cfg, reg, candidateTables)
	runStage(t, cfg, reg)

	cand := map[string]string{"id": "9", "name": "Ada", "score": "12.50", "profile": `{"langs": ["go"]}`, "tenant_id": "acme", "is_deleted": "f"}
	cdc.txn(change{table: "talent.candidate", op: avro.OpCreate, key: "9", after: cand})
	cdc.txn(
		change{table: "talent.project", op: avro.OpCreate, key: "9", after: map[string]string{"id": "2", "candidate_id": "9", "title": "B", "started_on": "2025-03-01", "tenant_id": "acme", "is_deleted": "f"}},
		change{table: "talent.project", op: avro.OpCreate, key: "9", after: map[string]string{"id": "1", "candidate_id": "9", "title": "A", "started_on": "2024-01-01", "tenant_id": "acme", "is_deleted": "f"}},
		change{table: "talent.technology", op: avro.OpCreate, key: "9", after: map[string]string{"id": "5", "project_id": "1", "name": "Go", "tenant_id": "acme", "is_deleted": "f"}},
		change{table: "talent.technology", op: avro.OpCreate, key: "9", after: map[string]string{"id": "6", "project_id": "2", "name": "SQL", "tenant_id": "acme", "is_deleted": "f"}},
		change{table: "talent.technology", op: avro.OpCreate, key: "9", after: map[string]string{"id": "7", "project_id": "2", "name": "old", "tenant_id": "acme", "is_deleted": "t"}},
	)
	// Soft-delete the candidate: deleted v3.
	deleted := map[string]string{}
	for k, v := range cand {
		deleted[k] = v
	}
	deleted["is_deleted"] = "t"
	cdc.txn(change{table: "talent.candidate", op: avro.OpUpdate, key: "9", after: deleted})

	snaps := snapshots(t, env, reg, cfg.Kafka.SnapshotTopic(cfg.Model.Roots[0]), 3)
	checkVersions(t, snaps)
	if snaps[0].Verb != avro.VerbCreated || snaps[1].Verb != avro.VerbUpdated || snaps[2].Verb != avro.VerbDeleted {
		t.Fatalf("verbs %s %s %s", snaps[0].Verb, snaps[1].Verb, snaps[2].Verb)
	}
	if snaps[2].EventType != "talent_candidate_deleted" {
		t.Fatalf("event type %q", snaps[2].EventType)
	}
	const wantV2 = `{"old":{"id":9,"name":"Ada","score":12.50,"profile":{"langs":["go"]},"projects":[]},` +
		`"new":{"id":9,"name":"Ada","score":12.50,"profile":{"langs":["go"]},"projects":[` +
		`{"id":1,"title":"A","started_on":"2024-01-01","technologies":[{"id":5,"name":"Go"}]},` +
		`{"id":2,"title":"B","started_on":"2025-03-01","technologies":[{"id":6,"name":"SQL"}]}]}}`
	if string(snaps[1].Payload) != wantV2 {
		t.Fatalf("v2 payload\n got %s\nwant %s", snaps[1].Payload, wantV2)
	}
}
