package cdc

import (
	"fmt"
	"testing"
	"time"

	"github.com/walhook/walhook/avro"
)

func TestStreamRootsSubordinatesReferences(t *testing.T) {
	e := newEnv(t, "")
	root := e.cfg.Model.Roots[0]
	changeTopic := e.cfg.Kafka.ChangeTopic(root)
	refTopic := e.cfg.Kafka.ReferenceTopic("session.instance")
	r := e.start("a")
	e.waitActive()

	e.exec(`BEGIN;
		INSERT INTO session.instance (id, status, tenant_id) VALUES (2523, 'COMPLETED', 't1');
		INSERT INTO incident.instance (id, name, status, severity, start_time, session_instance_id, tenant_id)
			VALUES (134, 'Face not detected', 'TRIGGERED', 'LOW', '2026-02-03T10:46:23.260Z', 2523, 't1');
		INSERT INTO incident.timeline (id, incident_instance_id, action, tenant_id) VALUES (1, 134, 'ESCALATED', 't1');
		COMMIT;`)
	e.exec(`UPDATE incident.instance SET status = 'RESOLVED' WHERE id = 134`)
	e.exec(`DELETE FROM incident.timeline WHERE id = 1`)

	c := e.consume(changeTopic)
	// txn1: instance insert, timeline insert, trigger's instance update, TxnEnd; txn2: update,
	// TxnEnd; txn3: timeline delete, trigger's update, TxnEnd.
	got := c.until(30*time.Second, atLeast(9, "change topic records", func(rs []rec) int { return len(rs) }))
	part := got[0].r.Partition
	var ends []*avro.TxnEnd
	for i, g := range got {
		if string(g.r.Key) != "134" || g.r.Partition != part {
			t.Fatalf("record %d: key %q partition %d, want key 134 on partition %d", i, g.r.Key, g.r.Partition, part)
		}
		if header(g.r, "walhook-lsn") == "" || header(g.r, "walhook-table") == "" {
			t.Fatalf("record %d: headers %v", i, g.r.Headers)
		}
		if g.kind == "txn-end" {
			ends = append(ends, g.end)
		}
	}
	kinds := ""
	for _, g := range got {
		if g.kind == "change" {
			kinds += fmt.Sprintf("%s:%s ", g.change.Table, g.change.Op)
		} else {
			kinds += g.kind + " "
		}
	}
	want := "incident.instance:create incident.timeline:create incident.instance:update txn-end " +
		"incident.instance:update txn-end incident.timeline:delete incident.instance:update txn-end "
	if kinds != want {
		t.Fatalf("records:\n got %s\nwant %s", kinds, want)
	}
	if len(ends) != 3 || ends[0].Rows != 3 || ends[1].Rows != 1 || ends[2].Rows != 2 || ends[0].RootKey != "134" || ends[0].Table != "incident.instance" {
		t.Fatalf("txn ends: %+v %+v %+v", ends[0], ends[1], ends[2])
	}
	first := got[0].change
	if first.CommitLSN != ends[0].CommitLSN || first.Xid != ends[0].Xid || first.Index != 1 || got[1].change.Index != 2 { // index 0: the session row
		t.Fatalf("change header %+v vs txn end %+v", first, ends[0])
	}
	if header(got[0].r, "walhook-op") != "create" || header(got[0].r, "walhook-lsn") != fmt.Sprintf("%X/%X", first.CommitLSN>>32, uint32(first.CommitLSN)) {
		t.Fatalf("headers %v, commit LSN %d", got[0].r.Headers, first.CommitLSN)
	}
	if v := val(first.After, "name"); v != "Face not detected" {
		t.Fatalf("name = %q", v)
	}
	del := got[6].change
	if del.Before == nil || val(del.Before, "incident_instance_id") != "134" {
		t.Fatalf("timeline delete before: %+v", del.Before)
	}

	// The reference row on its compacted topic, keyed by its key, with watermarks.
	rc := e.consume(refTopic)
	refs := rc.until(30*time.Second, func(rs []rec) error {
		if countKind(rs, "change") < 1 || countKind(rs, "watermark") < int(e.cfg.Kafka.Partitions) {
			return fmt.Errorf("%d changes, %d watermarks", countKind(rs, "change"), countKind(rs, "watermark"))
		}
		return nil
	})
	parts := map[int32]bool{}
	for _, g := range refs {
		if g.kind == "change" && string(g.r.Key) != "2523" {
			t.Fatalf("reference key %q", g.r.Key)
		}
		if g.kind == "watermark" {
			parts[g.r.Partition] = true
		}
	}
	if len(parts) != int(e.cfg.Kafka.Partitions) {
		t.Fatalf("watermarks on %d partitions, want %d", len(parts), e.cfg.Kafka.Partitions)
	}
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
