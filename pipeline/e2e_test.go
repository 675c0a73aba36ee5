package pipeline

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/kafkatest"
	"github.com/walhook/walhook/internal/pgtest"
)

// e2e is PostgreSQL with the demo schema, Kafka, the real cdc stage and a bubble-up stage.
type e2e struct {
	t   *testing.T
	env *kafkatest.Env
	cfg *config.Config
	reg avro.Registry
	db  *pgx.Conn
	// stopStage stops the bubble-up member startE2E (or startStage) started; nil while none runs.
	stopStage func() error
}

// e2eOptions tune startE2E.
type e2eOptions struct {
	kafka   []kafkatest.Option
	noStage bool // start only cdc: the test starts bubble-up itself (startStage)
}

// startE2E starts PostgreSQL with schemaSQL, Kafka, the cdc stage and one bubble-up member.
func startE2E(t *testing.T, modelYAML, schemaSQL string) *e2e {
	return startE2EWith(t, modelYAML, schemaSQL, e2eOptions{})
}

func startE2EWith(t *testing.T, modelYAML, schemaSQL string, o e2eOptions) *e2e {
	t.Helper()
	pg := pgtest.Start(t)
	url := pgtest.NewDatabase(t, pg)
	env := kafkatest.Start(t, o.kafka...)
	db, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	e := &e2e{t: t, env: env, cfg: testConfig(t, env, modelYAML), reg: testRegistry(t, env), db: db}
	e.exec(schemaSQL)
	e.cfg.Postgres.URL = url
	e.cfg.SetDefaults()
	e.cfg.CDC.StatusInterval = 100 * time.Millisecond
	e.cfg.CDC.HeartbeatInterval = 200 * time.Millisecond
	e.cfg.CDC.ManageReplicaIdentity = true
	e.cfg.CDC.SpillDir = t.TempDir()
	copts := []cdc.Option{cdc.WithRegistry(e.reg)}
	if os.Getenv("WALHOOK_TEST_LOG") != "" {
		l, _ := zap.NewDevelopment()
		copts = append(copts, cdc.WithLogger(l.Named("cdc")))
	}
	c, err := cdc.New(e.cfg, copts...)
	if err != nil {
		t.Fatalf("cdc.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("cdc Run: %v", err)
		}
	})
	if !o.noStage {
		e.startStage()
	}
	e.waitStreaming()
	return e
}

// startStage starts a bubble-up member in the stage's group; stopStage stops it.
func (e *e2e) startStage() {
	e.t.Helper()
	e.stopStage = runStage(e.t, e.cfg, e.reg)
}

// waitStreaming waits until the cdc stage streams from its slot: rows written before the slot
// exists belong to the initial snapshot (reads, which emit nothing), not to the story under test.
func (e *e2e) waitStreaming() {
	e.t.Helper()
	kafkatest.Eventually(e.t, 60*time.Second, func() error {
		var active bool
		err := e.db.QueryRow(context.Background(),
			`SELECT active FROM pg_replication_slots WHERE slot_name = $1`, e.cfg.Postgres.Slot).Scan(&active)
		if err == nil && !active {
			err = errors.New("slot exists but no reader streams from it yet")
		}
		return err
	})
}

func (e *e2e) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.db.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("exec %.100q: %v", sql, err)
	}
}

// TestSeedStoryEndToEnd runs the seed's story as SQL against the demo schema through the real
// cdc stage: created v1, then one updated v2 with exactly the seed payload's fields, types and
// nesting.
func TestSeedStoryEndToEnd(t *testing.T) {
	e := startE2E(t, demo.ModelYAML, demo.SchemaSQL)
	e.exec(`INSERT INTO session.instance (id, uuid, score, status, created_at, updated_at, tenant_id)
		VALUES (2523, '019c22ef-edc6-765d-9ab3-c2acf41b5253', 85, 'IN_PROGRESS', '2026-02-03 09:57:55.341+00', '2026-02-03 09:57:55.341+00', 'acme')`)
	e.exec(`INSERT INTO incident.instance (id, name, status, severity, start_time, session_instance_id, created_at, created_by, updated_at, updated_by, tenant_id)
		VALUES (134, 'Face not detected', 'TRIGGERED', 'LOW', '2026-02-03 10:46:23.26+00', 2523, '2026-02-03 09:57:55.341+00', 1, '2026-02-03 09:57:55.341+00', 1, 'acme')`)
	e.exec(`BEGIN;
		UPDATE incident.instance SET status = 'RESOLVED', end_time = '2026-02-03 11:15:00+00',
			resolution_notes = 'Confirmed candidate was adjusting camera. No violation.', updated_at = '2026-02-03 11:15:00+00' WHERE id = 134;
		INSERT INTO incident.timeline (id, incident_instance_id, action, description, created_at, created_by, updated_at, updated_by, tenant_id)
			VALUES (1, 134, 'ESCALATED', 'Auto-escalated after 5 minutes without face detection.', '2026-02-03 10:51:23.26+00', 0, '2026-02-03 10:51:23.26+00', 0, 'acme');
		UPDATE session.instance SET status = 'COMPLETED', updated_at = '2026-02-03 11:15:00+00' WHERE id = 2523;
		COMMIT`)

	if os.Getenv("WALHOOK_TEST_LOG") != "" {
		for _, r := range kafkatest.ConsumeAll(t, e.env, e.cfg.Kafka.ChangeTopic(e.cfg.Model.Roots[0]), 1, 10*time.Second) {
			t.Logf("change record %s[%d]@%d key %q headers %v", r.Topic, r.Partition, r.Offset, r.Key, r.Headers)
		}
	}
	snaps := snapshots(t, e.env, e.reg, e.cfg.Kafka.SnapshotTopic(e.cfg.Model.Roots[0]), 2)
	checkVersions(t, snaps)
	if len(snaps) != 2 || snaps[0].Verb != avro.VerbCreated || snaps[1].Verb != avro.VerbUpdated {
		t.Fatalf("want created v1 and updated v2, got %+v", snaps)
	}
	want := mustJSON(t, []byte(seedPayload)).(map[string]any)
	want["updated_at"] = "*" // the touch trigger sets it to now()
	if err := sameShape("$", want, mustJSON(t, snaps[1].Payload)); err != nil {
		t.Fatalf("v2 payload differs from the seed: %v\n%s", err, snaps[1].Payload)
	}
	t.Logf("v2 payload: %s", snaps[1].Payload)
}
