package cdc

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// streamedEnv makes PostgreSQL stream any transaction past 64kB and the stage spill past
// 64KiB, so the test transactions take the streamed path and spill files.
func streamedEnv(t *testing.T) *env {
	e := newEnv(t, "")
	e.exec(`ALTER SYSTEM SET logical_decoding_work_mem = '64kB'`)
	e.exec(`SELECT pg_reload_conf()`)
	t.Cleanup(func() { e.exec(`ALTER SYSTEM RESET logical_decoding_work_mem`); e.exec(`SELECT pg_reload_conf()`) })
	e.cfg.CDC.MemoryLimitBytes = 64 << 10
	e.exec(`INSERT INTO session.instance (id, status, tenant_id) VALUES (1, 'COMPLETED', 't1');
		INSERT INTO incident.instance (id, status, severity, start_time, session_instance_id, tenant_id)
		SELECT g, 'TRIGGERED', 'LOW', now(), 1, 't1' FROM generate_series(1, 10) g`)
	return e
}

const timelineRows = `INSERT INTO incident.timeline (incident_instance_id, action, description, tenant_id)
	SELECT 1 + g %% 10, 'COMMENTED', '%s-' || g, 't1' FROM generate_series(1, %d) g;`

func TestStreamedTransactions(t *testing.T) {
	e := streamedEnv(t)
	topic := e.cfg.Kafka.ChangeTopic(e.cfg.Model.Roots[0])
	r := e.start("a")
	e.waitActive()
	// The trigger touches the incident for every timeline row: 2 changes per row.
	e.exec(fmt.Sprintf(`BEGIN; `+timelineRows+` COMMIT;`, "big", 5000))
	e.exec(fmt.Sprintf(`BEGIN; `+timelineRows+` ROLLBACK;`, "aborted", 5000))
	e.exec(fmt.Sprintf(`BEGIN; `+timelineRows+` SAVEPOINT s; `+timelineRows+` ROLLBACK TO s; `+timelineRows+` COMMIT;`,
		"keep1", 3000, "dropped", 3000, "keep2", 3000))
	e.exec(`INSERT INTO incident.timeline (incident_instance_id, action, description, tenant_id) VALUES (1, 'COMMENTED', 'last', 't1')`)
	c := e.consume(topic)
	got := c.until(120*time.Second, func(rs []rec) error {
		for _, g := range changes(rs, "incident.timeline") {
			if val(g.change.After, "description") == "last" {
				return nil
			}
		}
		return fmt.Errorf("%d timeline rows so far", len(changes(rs, "incident.timeline")))
	})
	counts := map[string]int{}
	for _, g := range changes(got, "incident.timeline") {
		d := val(g.change.After, "description")
		for _, p := range []string{"big", "aborted", "keep1", "dropped", "keep2", "last"} {
			if len(d) > len(p) && d[:len(p)+1] == p+"-" || d == p {
				counts[p]++
			}
		}
	}
	want := map[string]int{"big": 5000, "keep1": 3000, "keep2": 3000, "last": 1}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Fatalf("timeline rows per transaction: %v, want %v", counts, want)
	}
	ents, _ := os.ReadDir(e.cfg.CDC.SpillDir)
	if len(ents) != 0 {
		t.Fatalf("spill files left: %v", ents)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

// ALTER TABLE while streaming: rows before and after carry their own schema version.
func TestAlterTableMidStream(t *testing.T) {
	e := newEnv(t, "")
	r := e.start("a")
	e.waitActive()
	e.exec(`INSERT INTO session.instance (id, status, tenant_id) VALUES (1, 'COMPLETED', 't1')`)
	e.exec(`ALTER TABLE session.instance ADD COLUMN region text`)
	e.exec(`INSERT INTO session.instance (id, status, tenant_id, region) VALUES (2, 'COMPLETED', 't1', 'eu')`)
	e.exec(`ALTER TABLE session.instance DROP COLUMN region`)
	e.exec(`INSERT INTO session.instance (id, status, tenant_id) VALUES (3, 'COMPLETED', 't1')`)
	c := e.consume(e.cfg.Kafka.ReferenceTopic("session.instance"))
	got := c.until(30*time.Second, atLeast(3, "changes", func(rs []rec) int { return countKind(rs, "change") }))
	byKey := map[string]rec{}
	for _, g := range changes(got, "session.instance") {
		byKey[string(g.r.Key)] = g // keys are on different partitions: no order across them
	}
	if _, ok := byKey["1"].change.After.Get("region"); ok {
		t.Fatalf("row 1 has region")
	}
	if v := val(byKey["2"].change.After, "region"); v != "eu" {
		t.Fatalf("row 2 region = %q", v)
	}
	if _, ok := byKey["3"].change.After.Get("region"); ok {
		t.Fatalf("row 3 has region")
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}
