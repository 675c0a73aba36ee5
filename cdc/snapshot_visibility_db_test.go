package cdc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walhook/walhook/internal/kafkatest"
)

// TestSnapshotSeesCommitsBeforeLowWatermark holds a transaction in the state that makes a
// snapshot read stale: its commit record is in the WAL (the stream emits its change) but
// PostgreSQL still lists it as running, so a snapshot taken after the low watermark does not
// see it. Synchronous replication to a standby that never connects keeps a committed
// transaction exactly there ("committed locally", waiting in SyncRep). A resnapshot of the
// row's table must not emit the pre-commit row after the streamed change: its chunk is read
// again until the transaction has left the ProcArray.
func TestSnapshotSeesCommitsBeforeLowWatermark(t *testing.T) {
	e := newEnv(t, "")
	if e.pg.Cluster() == nil {
		t.Skip("reconfigures synchronous replication of the whole server: runs on the embedded cluster only")
	}
	ctx := context.Background()
	e.cfg.CDC.SnapshotChunkRows = 10
	e.seed(5, 30, 1)
	r := e.start("a")
	e.waitActive()

	// Every session commits locally, except the held one, which waits for a standby that
	// does not exist.
	e.exec(`ALTER SYSTEM SET synchronous_standby_names = 'walhook_no_such_standby'`)
	e.exec(`ALTER SYSTEM SET synchronous_commit = 'local'`)
	e.exec(`SELECT pg_reload_conf()`)
	t.Cleanup(func() {
		c := e.connect()
		_, _ = c.Exec(context.Background(), `ALTER SYSTEM RESET synchronous_standby_names`)
		_, _ = c.Exec(context.Background(), `ALTER SYSTEM RESET synchronous_commit`)
		_, _ = c.Exec(context.Background(), `SELECT pg_reload_conf()`)
	})
	held := e.connect()
	var pid int
	if err := held.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	kafkatest.Eventually(t, 10*time.Second, func() error {
		var names string
		if err := held.QueryRow(ctx, `SHOW synchronous_standby_names`).Scan(&names); err != nil {
			return err
		}
		if names != "walhook_no_such_standby" {
			return fmt.Errorf("synchronous_standby_names is %q", names)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // the checkpointer publishes the standby list on reload
	if _, err := held.Exec(ctx, `SET synchronous_commit = 'on'`); err != nil {
		t.Fatal(err)
	}
	committed := make(chan error, 1)
	go func() {
		_, err := held.Exec(ctx, `UPDATE incident.instance SET name = 'held' WHERE id = 5`)
		committed <- err
	}()
	kafkatest.Eventually(t, 10*time.Second, func() error {
		select {
		case err := <-committed:
			t.Fatalf("the held transaction did not wait for the standby (err %v)", err)
		default:
		}
		var ev *string
		if err := e.db.QueryRow(ctx, `SELECT wait_event FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&ev); err != nil {
			return err
		}
		if ev == nil || *ev != "SyncRep" {
			return fmt.Errorf("held transaction waits on %v", ev)
		}
		return nil
	})

	before := e.snapProgressOf()["incident.instance"]
	if _, err := RequestResnapshot(ctx, e.cfg, "incident.instance"); err != nil {
		t.Fatal(err)
	}
	// Until the held transaction leaves the ProcArray, its chunk is read again (a reader
	// that does not notice finishes the resnapshot instead, and the checks below fail).
	kafkatest.Eventually(t, 60*time.Second, func() error {
		if n := staleRereads(r.stage.reg.(prometheus.Gatherer)); n < 2 {
			if p := e.snapProgressOf()["incident.instance"]; p != nil && p.Done && p.Gen > before.Gen {
				return nil
			}
			return fmt.Errorf("%v chunks read again for a stale snapshot", n)
		}
		return nil
	})
	if _, err := e.db.Exec(ctx, `SELECT pg_cancel_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-committed:
		// Cancelling the wait leaves the transaction committed (with a warning).
		if err != nil {
			t.Logf("held transaction: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held transaction still waits after its cancel")
	}
	e.waitSnapshots()
	kafkatest.Eventually(t, 60*time.Second, func() error {
		if p := e.snapProgressOf()["incident.instance"]; p == nil || !p.Done || p.Gen == before.Gen {
			return fmt.Errorf("progress %+v", p)
		}
		return nil
	})
	e.caughtUp()

	want := e.dbRows()
	if !strings.HasPrefix(want["incident.instance"]["5"], "held|") {
		t.Fatalf("incident 5 in the database: %q", want["incident.instance"]["5"])
	}
	c := e.consume(e.snapTopics()...)
	got := c.until(60*time.Second, func(rs []rec) error { return sameRows(fold(rs), want) })
	checkOrder(t, got)
	if n := staleRereads(r.stage.reg.(prometheus.Gatherer)); n < 2 {
		t.Fatalf("%v chunks read again for a stale snapshot, want 2 or more", n)
	}
	if n := reads(got, "incident.instance")["5"]; n != 2 {
		t.Fatalf("incident 5 read %d times, want 2 (initial snapshot and resnapshot)", n)
	}
	if err := r.stop(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
}

func staleRereads(g prometheus.Gatherer) float64 {
	v, _ := gathered(g, "walhook_cdc_snapshot_chunk_rereads_total", "reason", "stale_snapshot")
	return v
}
