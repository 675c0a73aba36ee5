package cdc

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/walhook/walhook/internal/kafkatest"
)

// runErr runs a stage that must fail at start and returns its error.
func (e *env) runErr() error {
	e.t.Helper()
	s, err := New(e.cfg, WithLogger(zaptest.NewLogger(e.t)), WithRegisterer(prometheus.NewRegistry()))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return s.Run(ctx)
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not contain %q", err, p)
		}
	}
}

func TestSetupErrorsCarryTheFix(t *testing.T) {
	e := newEnv(t, "")
	e.cfg.CDC.ManageReplicaIdentity = false
	t.Run("replica identity", func(t *testing.T) {
		wantErr(t, e.runErr(), "incident.timeline", `ALTER TABLE "incident"."timeline" REPLICA IDENTITY FULL`, "incident_instance_id")
	})
	e.exec(`ALTER TABLE incident.timeline REPLICA IDENTITY FULL`)
	t.Run("publication lacks a table", func(t *testing.T) {
		e.exec(`ALTER PUBLICATION walhook DROP TABLE session.instance`)
		wantErr(t, e.runErr(), `ALTER PUBLICATION "walhook" ADD TABLE "session"."instance"`)
		e.exec(`ALTER PUBLICATION walhook ADD TABLE session.instance`)
	})
	t.Run("publication without truncate", func(t *testing.T) {
		e.exec(`ALTER PUBLICATION walhook SET (publish = 'insert, update, delete')`)
		wantErr(t, e.runErr(), `ALTER PUBLICATION "walhook" SET (publish = 'insert, update, delete, truncate');`)
		e.exec(`ALTER PUBLICATION walhook SET (publish = 'insert, update, delete, truncate')`)
	})
	t.Run("slot of another plugin", func(t *testing.T) {
		e.exec(`SELECT pg_create_logical_replication_slot('other', 'test_decoding')`)
		e.cfg.Postgres.Slot = "other"
		defer func() { e.cfg.Postgres.Slot = "walhook" }()
		wantErr(t, e.runErr(), `"test_decoding"`, `pg_drop_replication_slot('other')`, `pg_create_logical_replication_slot('other', 'pgoutput')`)
	})
	t.Run("lost slot", func(t *testing.T) {
		r := e.start("a")
		e.waitActive()
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
		// The walsender lets go of the slot a moment after the stage's connection closed.
		kafkatest.Eventually(t, 10*time.Second, func() error {
			_, err := e.db.Exec(context.Background(), `SELECT pg_drop_replication_slot('walhook')`)
			return err
		})
		wantErr(t, e.runErr(), "replication slot walhook is gone", "walhook cdc resnapshot")
	})
}

// A second stage stands by on the advisory lock and takes over when the first stops.
func TestStandbyTakesOver(t *testing.T) {
	e := newEnv(t, "")
	a := e.start("a")
	e.waitActive()
	b := e.start("b")
	topic := e.cfg.Kafka.ReferenceTopic("session.instance")
	e.exec(`INSERT INTO session.instance (id, status, tenant_id) VALUES (1, 'COMPLETED', 't1')`)
	c := e.consume(topic)
	c.until(30*time.Second, atLeast(1, "changes", func(rs []rec) int { return countKind(rs, "change") }))
	if b.stage.metrics == nil {
		t.Fatal("no metrics")
	}
	select {
	case err := <-b.done:
		t.Fatalf("standby returned: %v", err)
	default:
	}
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	e.exec(`INSERT INTO session.instance (id, status, tenant_id) VALUES (2, 'COMPLETED', 't1')`)
	c.until(30*time.Second, atLeast(2, "changes", func(rs []rec) int { return countKind(rs, "change") }))
	kafkatest.Eventually(t, 10*time.Second, func() error { return nil })
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
}
