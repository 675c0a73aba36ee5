package pipeline

import (
	"fmt"
	"strings"
	"testing"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/kafkatest"
)

// reemitModel is the demo model with reemit on for the incident's session reference.
func reemitModel(t *testing.T) string {
	t.Helper()
	const cols = "columns: [id, uuid, score, status, created_at, updated_at]"
	m := strings.Replace(demoModel, cols, cols+"\n          reemit: true", 1)
	if m == demoModel {
		t.Fatal("demo model: session reference not found")
	}
	return m
}

func incidentAt(id, session string) map[string]string {
	m := seedIncident()
	m["id"], m["session_instance_id"] = id, session
	return m
}

func sessionWith(id, status, score string) map[string]string {
	m := seedSession()
	m["id"], m["status"], m["score"] = id, status, score
	return m
}

// reemitCase drives a stage through a fakeCDC and checks each root's snapshots against the
// commit LSNs they must carry, in version order.
type reemitCase struct {
	t     *testing.T
	env   *kafkatest.Env
	reg   avro.Registry
	cdc   *fakeCDC
	topic string
	want  map[string][]uint64 // root key → commit LSN of v1, v2, …
}

func newReemitCase(t *testing.T, model string) (*reemitCase, func() func() error) {
	env := kafkatest.Start(t)
	cfg := testConfig(t, env, model)
	reg := testRegistry(t, env)
	c := &reemitCase{t: t, env: env, reg: reg, cdc: newFakeCDC(t, env, cfg, reg, demoTables),
		topic: cfg.Kafka.SnapshotTopic(cfg.Model.Roots[0]), want: map[string][]uint64{}}
	return c, func() func() error { return runStage(t, cfg, reg) }
}

// txn writes a transaction and records that roots get a version at its LSN.
func (c *reemitCase) txn(roots []string, changes ...change) uint64 {
	c.t.Helper()
	lsn := c.cdc.txn(changes...)
	for _, r := range roots {
		c.want[r] = append(c.want[r], lsn)
	}
	return lsn
}

// check waits for every expected snapshot, verifies each root's versions and LSNs, and returns
// the last snapshot of each root.
func (c *reemitCase) check() map[string]avro.Snapshot {
	c.t.Helper()
	n := 0
	for _, l := range c.want {
		n += len(l)
	}
	snaps := snapshots(c.t, c.env, c.reg, c.topic, n)
	last := checkVersions(c.t, snaps)
	got := map[string][]uint64{}
	for _, s := range snaps {
		got[s.Key] = append(got[s.Key], s.CommitLSN)
	}
	if fmt.Sprint(got) != fmt.Sprint(c.want) {
		c.t.Fatalf("snapshot LSNs by root:\n got %v\nwant %v", lsnsText(got), lsnsText(c.want))
	}
	return last
}

func lsnsText(m map[string][]uint64) map[string][]string {
	out := map[string][]string{}
	for k, l := range m {
		for _, lsn := range l {
			out[k] = append(out[k], lsnText(lsn))
		}
	}
	return out
}

func sessionField(t *testing.T, s avro.Snapshot, field string) any {
	t.Helper()
	p := mustJSON(t, s.Payload).(map[string]any)
	sess, ok := p["session"].(map[string]any)
	if !ok {
		t.Fatalf("root %s v%d: session = %v", s.Key, s.Version, p["session"])
	}
	return sess[field]
}

// TestReemitOnReferenceChange: with reemit on, a session change re-emits every incident
// pointing at it once, with the new session; a transaction changing both an incident and its
// session gives that incident one version; an incident that moved to another session follows it.
func TestReemitOnReferenceChange(t *testing.T) {
	c, start := newReemitCase(t, reemitModel(t))
	start()
	c.txn([]string{"134", "135", "136"},
		change{table: "session.instance", op: avro.OpCreate, key: "2523", after: sessionWith("2523", "IN_PROGRESS", "85")},
		change{table: "session.instance", op: avro.OpCreate, key: "9", after: sessionWith("9", "IN_PROGRESS", "10")},
		change{table: "incident.instance", op: avro.OpCreate, key: "134", after: incidentAt("134", "2523")},
		change{table: "incident.instance", op: avro.OpCreate, key: "135", after: incidentAt("135", "2523")},
		change{table: "incident.instance", op: avro.OpCreate, key: "136", after: incidentAt("136", "9")},
	)
	c.check()

	// A session change alone re-emits both incidents pointing at it, not the third.
	c.txn([]string{"134", "135"},
		change{table: "session.instance", op: avro.OpUpdate, key: "2523", after: sessionWith("2523", "COMPLETED", "85")})
	last := c.check()
	for _, k := range []string{"134", "135"} {
		if s := last[k]; s.Verb != avro.VerbUpdated || s.Version != 2 || sessionField(t, s, "status") != "COMPLETED" {
			t.Fatalf("root %s: %s v%d session.status %v, want updated v2 COMPLETED", k, s.Verb, s.Version, sessionField(t, s, "status"))
		}
	}

	// The incident and its session in one transaction: one version for 134 (its own), one
	// re-emission for 135.
	resolved := incidentAt("134", "2523")
	resolved["status"] = "RESOLVED"
	c.txn([]string{"134", "135"},
		change{table: "incident.instance", op: avro.OpUpdate, key: "134", after: resolved},
		change{table: "session.instance", op: avro.OpUpdate, key: "2523", after: sessionWith("2523", "COMPLETED", "90")})
	last = c.check()
	if s := last["134"]; s.Version != 3 || sessionField(t, s, "score") != 90.0 {
		t.Fatalf("root 134 v%d score %v, want v3 score 90", s.Version, sessionField(t, s, "score"))
	}

	// 135 moves to session 9: a change of 2523 no longer re-emits it, a change of 9 does.
	c.txn([]string{"135"}, change{table: "incident.instance", op: avro.OpUpdate, key: "135", after: incidentAt("135", "9")})
	c.txn([]string{"134"}, change{table: "session.instance", op: avro.OpUpdate, key: "2523", after: sessionWith("2523", "COMPLETED", "91")})
	c.txn([]string{"135", "136"}, change{table: "session.instance", op: avro.OpUpdate, key: "9", after: sessionWith("9", "COMPLETED", "11")})
	// A last own change of each incident: a spurious re-emission would shift its version.
	c.txn([]string{"134", "135", "136"},
		change{table: "incident.instance", op: avro.OpUpdate, key: "134", after: resolved},
		change{table: "incident.instance", op: avro.OpUpdate, key: "135", after: incidentAt("135", "9")},
		change{table: "incident.instance", op: avro.OpUpdate, key: "136", after: incidentAt("136", "9")})
	last = c.check()
	if s := last["136"]; sessionField(t, s, "status") != "COMPLETED" {
		t.Fatalf("root 136: session.status %v, want COMPLETED", sessionField(t, s, "status"))
	}
}

// TestReemitOff: without reemit a session change emits nothing; the incident's next own change
// shows the new session.
func TestReemitOff(t *testing.T) {
	c, start := newReemitCase(t, demoModel)
	start()
	c.txn([]string{"134"},
		change{table: "session.instance", op: avro.OpCreate, key: "2523", after: seedSession()},
		change{table: "incident.instance", op: avro.OpCreate, key: "134", after: incidentAt("134", "2523")})
	c.txn(nil, change{table: "session.instance", op: avro.OpUpdate, key: "2523", after: sessionWith("2523", "COMPLETED", "85")})
	c.txn([]string{"134"}, change{table: "incident.instance", op: avro.OpUpdate, key: "134", after: incidentAt("134", "2523")})
	if s := c.check()["134"]; sessionField(t, s, "status") != "COMPLETED" {
		t.Fatalf("root 134 v%d: session.status %v, want COMPLETED", s.Version, sessionField(t, s, "status"))
	}
}

// TestReemitRestartDoesNotRepeat stops the only member after a re-emission and starts another in
// the same group (fresh local state, restored from the changelog): nothing is re-emitted again,
// and the next session change re-emits once.
func TestReemitRestartDoesNotRepeat(t *testing.T) {
	c, start := newReemitCase(t, reemitModel(t))
	stop := start()
	c.txn([]string{"134", "135"},
		change{table: "session.instance", op: avro.OpCreate, key: "2523", after: seedSession()},
		change{table: "incident.instance", op: avro.OpCreate, key: "134", after: incidentAt("134", "2523")},
		change{table: "incident.instance", op: avro.OpCreate, key: "135", after: incidentAt("135", "2523")})
	c.txn([]string{"134", "135"}, change{table: "session.instance", op: avro.OpUpdate, key: "2523", after: sessionWith("2523", "COMPLETED", "85")})
	c.check()
	if err := stop(); err != nil {
		t.Fatalf("first member: %v", err)
	}
	start()
	c.txn([]string{"134", "135"}, change{table: "session.instance", op: avro.OpUpdate, key: "2523", after: sessionWith("2523", "COMPLETED", "99")})
	c.txn([]string{"134", "135"},
		change{table: "incident.instance", op: avro.OpUpdate, key: "134", after: incidentAt("134", "2523")},
		change{table: "incident.instance", op: avro.OpUpdate, key: "135", after: incidentAt("135", "2523")})
	if s := c.check()["135"]; s.Version != 4 || sessionField(t, s, "score") != 99.0 {
		t.Fatalf("root 135 v%d score %v, want v4 score 99", s.Version, sessionField(t, s, "score"))
	}
}
