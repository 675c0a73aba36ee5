package cdc

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walhook/walhook/internal/kafkatest"
)

// TestTruncateRecords: a transaction that updates an incident, truncates the session, incident
// and (by CASCADE) timeline tables in one statement and inserts a session and an incident after
// it gives, on every partition of the change topic, a truncate record per truncated model table
// at its place (after the update, before the insert), then the TxnEnds, then one truncate-end;
// on every partition of the reference topic a truncate record before the inserted session and a
// watermark at the commit LSN. The slot's confirmed_flush_lsn passes the transaction.
func TestTruncateRecords(t *testing.T) {
	e := newEnv(t, "")
	changeTopic := e.cfg.Kafka.ChangeTopic(e.cfg.Model.Roots[0])
	refTopic := e.cfg.Kafka.ReferenceTopic("session.instance")
	r := e.start("a")
	e.waitActive()
	e.exec(`INSERT INTO session.instance (id, status, tenant_id) VALUES (2523, 'COMPLETED', 't1');
		INSERT INTO incident.instance (id, name, status, severity, start_time, session_instance_id, tenant_id)
			VALUES (134, 'Face not detected', 'TRIGGERED', 'LOW', '2026-02-03T10:46:23.260Z', 2523, 't1');
		INSERT INTO incident.timeline (id, incident_instance_id, action, tenant_id) VALUES (1, 134, 'ESCALATED', 't1')`)
	e.exec(`BEGIN;
		UPDATE incident.instance SET name = 'before' WHERE id = 134;
		TRUNCATE session.instance, incident.instance CASCADE;
		INSERT INTO session.instance (id, status, tenant_id) VALUES (9, 'COMPLETED', 't1');
		INSERT INTO incident.instance (id, name, status, severity, start_time, session_instance_id, tenant_id)
			VALUES (135, 'after', 'TRIGGERED', 'LOW', '2026-02-03T10:46:23.260Z', 9, 't1');
		COMMIT`)
	after := e.currentLSN()
	parts := int(e.cfg.Kafka.Partitions)

	c := e.consume(changeTopic)
	got := c.until(30*time.Second, atLeast(parts, "truncate-end records", func(rs []rec) int { return countKind(rs, "truncate-end") }))
	var lsn string
	for _, g := range got {
		if g.kind == "truncate-end" {
			lsn = header(g.r, "walhook-lsn")
		}
	}
	byPart := map[int32][]string{}
	for _, g := range got {
		if header(g.r, "walhook-lsn") != lsn {
			continue
		}
		what := g.kind
		switch g.kind {
		case "change":
			what = fmt.Sprintf("%s:%s:%s", g.change.Table, g.change.Op, g.r.Key)
		case "txn-end":
			what = "txn-end:" + g.end.RootKey
		case "truncate":
			what = "truncate:" + header(g.r, "walhook-table")
			if string(g.r.Key) != "walhook.truncate."+lsn || g.mark == nil || fmt.Sprintf("%X/%X", g.mark.CommitLSN>>32, uint32(g.mark.CommitLSN)) != lsn {
				t.Fatalf("truncate record key %q body %+v, want key walhook.truncate.%s and its commit LSN", g.r.Key, g.mark, lsn)
			}
		case "truncate-end":
			if g.end.Table != "incident.instance" || g.end.RootKey != "" || g.end.Rows != 0 || header(g.r, "walhook-table") != "incident.instance" {
				t.Fatalf("truncate-end %+v headers %v", g.end, g.r.Headers)
			}
		}
		byPart[g.r.Partition] = append(byPart[g.r.Partition], what)
	}
	t.Logf("records of the transaction by partition: %v", byPart)
	if len(byPart) != parts {
		t.Fatalf("the transaction's records are on %d partitions, want all %d: %v", len(byPart), parts, byPart)
	}
	for p, seq := range byPart {
		// Whatever else the partition holds, the truncates (the Truncate message's order) come
		// after the update of 134 and before the insert of 135; the truncate-end is last.
		joined := strings.Join(seq, " ")
		trunc := "truncate:incident.instance truncate:incident.timeline"
		if !strings.Contains(joined, trunc) && !strings.Contains(joined, "truncate:incident.timeline truncate:incident.instance") {
			t.Fatalf("partition %d: %s, want a truncate of each table", p, joined)
		}
		if seq[len(seq)-1] != "truncate-end" || strings.Count(joined, "truncate-end") != 1 {
			t.Fatalf("partition %d: %s, want one truncate-end, last", p, joined)
		}
		firstTrunc := slices.IndexFunc(seq, func(s string) bool { return strings.HasPrefix(s, "truncate:") })
		for i, s := range seq {
			switch {
			case strings.HasSuffix(s, ":update:134") && i > firstTrunc:
				t.Fatalf("partition %d: %s: the update before the TRUNCATE comes after it", p, joined)
			case strings.HasSuffix(s, ":create:135") && i < firstTrunc:
				t.Fatalf("partition %d: %s: the insert after the TRUNCATE comes before it", p, joined)
			case strings.HasPrefix(s, "txn-end") && i < firstTrunc:
				t.Fatalf("partition %d: %s: a TxnEnd before the TRUNCATE", p, joined)
			}
		}
	}

	var hi, lo uint64
	fmt.Sscanf(lsn, "%X/%X", &hi, &lo)
	commitLSN := hi<<32 | lo
	rc := e.consume(refTopic)
	refs := rc.until(30*time.Second, atLeast(parts, "truncate records", func(rs []rec) int { return countKind(rs, "truncate") }))
	truncated := map[int32]bool{}
	for _, g := range refs {
		switch {
		case g.kind == "truncate":
			if string(g.r.Key) != "walhook.truncate."+lsn || header(g.r, "walhook-table") != "session.instance" {
				t.Fatalf("reference truncate key %q headers %v", g.r.Key, g.r.Headers)
			}
			truncated[g.r.Partition] = true
		case g.kind == "change" && string(g.r.Key) == "9" && !truncated[g.r.Partition]:
			t.Fatalf("session 9, inserted after the TRUNCATE, comes before it on partition %d", g.r.Partition)
		}
	}
	if len(truncated) != parts {
		t.Fatalf("reference truncate on %d partitions, want %d", len(truncated), parts)
	}
	rc.until(30*time.Second, func(rs []rec) error {
		marked := map[int32]bool{}
		for _, g := range rs {
			if g.kind == "watermark" && g.mark.CommitLSN >= commitLSN {
				marked[g.r.Partition] = true
			}
		}
		if len(marked) != parts {
			return fmt.Errorf("watermarks at or past %s on %d of %d partitions", lsn, len(marked), parts)
		}
		return nil
	})
	for _, tbl := range []string{"incident.instance", "incident.timeline", "session.instance"} {
		if n, _ := gathered(r.stage.reg.(prometheus.Gatherer), "walhook_cdc_truncates_total", "table", tbl); n != 1 {
			t.Fatalf("walhook_cdc_truncates_total{table=%q} = %v, want 1", tbl, n)
		}
	}
	kafkatest.Eventually(t, 15*time.Second, func() error {
		if c := e.confirmedFlush(); c < after {
			return fmt.Errorf("confirmed_flush_lsn %X, not yet past the transaction (%X)", c, after)
		}
		return nil
	})
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestTruncateDuringSnapshot truncates the timeline and fills it again (one transaction each),
// over and over, while the initial snapshot reads the incidents and their timelines chunk by
// chunk: the change topic, folded in partition order (a truncate record drops the table's rows
// of its partition), equals the database. A TRUNCATE waits for a chunk's SELECT and so often
// commits inside its window: the chunk is read again (reason truncated), since rows read before
// the TRUNCATE would otherwise be written after it.
func TestTruncateDuringSnapshot(t *testing.T) {
	e := newEnv(t, "")
	e.cfg.CDC.SnapshotChunkRows = 5
	e.seed(20, 400, 2)
	r := e.start("a")
	c := e.consume(e.snapTopics()...)
	c.until(60*time.Second, atLeast(5, "incidents read", func(rs []rec) int { return len(reads(rs, "incident.instance")) }))

	stop, done := make(chan struct{}), make(chan error, 1)
	go func() {
		db := e.connect()
		defer db.Close(context.Background())
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			sql := `TRUNCATE incident.timeline`
			if i%2 == 1 {
				sql = fmt.Sprintf(`INSERT INTO incident.timeline (id, incident_instance_id, action, tenant_id)
					SELECT 10000 + g, g, 'ESCALATED', 't1' FROM generate_series(1 + %d %% 7, 400, 7) g`, i)
			}
			_, err := db.Exec(context.Background(), sql)
			if err != nil {
				done <- err
				return
			}
		}
	}()
	e.waitSnapshots()
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("truncating writer: %v", err)
	}
	e.caughtUp()
	want := e.dbRows()
	got := c.until(60*time.Second, func(rs []rec) error { return sameRows(fold(rs), want) })
	checkOrder(t, got)
	rereads, _ := gathered(r.stage.reg.(prometheus.Gatherer), "walhook_cdc_snapshot_chunk_rereads_total", "reason", "truncated")
	t.Logf("%d TRUNCATEs, %d chunks read again because one fell into their window", countKind(got, "truncate")/int(e.cfg.Kafka.Partitions), int(rereads))
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
