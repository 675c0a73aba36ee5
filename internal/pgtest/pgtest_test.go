package pgtest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/pgtest"
)

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", firstLine(sql), err)
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// The seed story of the contract page: session 2523, incident 134, one ESCALATED timeline entry.
const seedSQL = `
INSERT INTO session.instance (id, uuid, score, status, created_at, updated_at, tenant_id)
VALUES (2523, '019c22ef-edc6-765d-9ab3-c2acf41b5253', 85, 'COMPLETED',
        '2026-02-03T09:57:55.341Z', '2026-02-03T11:15:00.000Z', 'tenant-a');
INSERT INTO incident.instance (id, name, description, status, severity, start_time, end_time,
        resolution_notes, session_instance_id, external_id, created_at, created_by, updated_at,
        updated_by, tenant_id)
VALUES (134, 'Face not detected', NULL, 'TRIGGERED', 'LOW', '2026-02-03T10:46:23.260Z', NULL, NULL,
        2523, NULL, '2026-02-03T09:57:55.341Z', 1, '2026-02-03T09:57:55.341Z', 1, 'tenant-a');`

func TestDemoSchemaIsIdempotentAndTriggerTouchesParent(t *testing.T) {
	url := pgtest.NewDatabase(t, pgtest.Start(t))
	conn := connect(t, url)
	mustExec(t, conn, demo.SchemaSQL)
	mustExec(t, conn, demo.SchemaSQL) // `walhook dev` applies it on every start
	mustExec(t, conn, seedSQL)

	var before, after, now time.Time
	q := "SELECT updated_at, now() FROM incident.instance WHERE id = 134"
	if err := conn.QueryRow(t.Context(), q).Scan(&before, &now); err != nil {
		t.Fatal(err)
	}
	mustExec(t, conn, `INSERT INTO incident.timeline (id, incident_instance_id, action, description,
		created_at, created_by, updated_at, updated_by, tenant_id)
		VALUES (1, 134, 'ESCALATED', 'Auto-escalated after 5 minutes without face detection.',
		'2026-02-03T10:51:23.260Z', 0, '2026-02-03T10:51:23.260Z', 0, 'tenant-a')`)
	if err := conn.QueryRow(t.Context(), "SELECT updated_at FROM incident.instance WHERE id = 134").Scan(&after); err != nil {
		t.Fatal(err)
	}
	if !after.After(before) || after.Before(now) {
		t.Fatalf("timeline insert left incident.updated_at at %v (was %v, now %v); the trigger should set now()", after, before, now)
	}
	mustExec(t, conn, demo.SchemaSQL) // and again with data in place
	assertCount(t, conn, "SELECT count(*) FROM incident.status", 4)
	assertCount(t, conn, "SELECT count(*) FROM incident.timeline_action", 6)
	assertCount(t, conn, "SELECT count(*) FROM pg_trigger WHERE tgname = 'timeline_touch_instance'", 1)
}

func TestDemoSchemaTriggerOnDeleteAndGeneratedIDs(t *testing.T) {
	conn := connect(t, pgtest.NewDatabase(t, pgtest.Start(t)))
	mustExec(t, conn, demo.SchemaSQL)
	mustExec(t, conn, seedSQL)
	mustExec(t, conn, "INSERT INTO incident.timeline (incident_instance_id, action, tenant_id) VALUES (134, 'DETECTED', 'tenant-a')")
	assertCount(t, conn, "SELECT min(id) FROM incident.timeline", 10000)
	mustExec(t, conn, "UPDATE incident.instance SET updated_at = '2026-01-01' WHERE id = 134")
	mustExec(t, conn, "DELETE FROM incident.timeline WHERE incident_instance_id = 134")
	assertCount(t, conn, "SELECT count(*) FROM incident.instance WHERE id = 134 AND updated_at > '2026-01-02'", 1)
}

func TestHookSchemaConstraints(t *testing.T) {
	conn := connect(t, pgtest.NewDatabase(t, pgtest.Start(t)))
	mustExec(t, conn, demo.SchemaSQL)
	mustExec(t, conn, "INSERT INTO hook.application (name) VALUES ('demo')")
	insert := `INSERT INTO hook.subscription (application_id, tenant_id, event_type, url, method, secret)
	           SELECT id, 'tenant-a', $1, 'https://example.com/hook', $2, 'whsec_x' FROM hook.application`
	mustExec(t, conn, insert, "incident_instance_updated", "PUT")
	for _, bad := range [][2]string{{"incident.instance.updated", "POST"}, {"incident_instance_updated", "GET"}} {
		if _, err := conn.Exec(t.Context(), insert, bad[0], bad[1]); err == nil {
			t.Errorf("subscription with event_type %q method %q accepted", bad[0], bad[1])
		}
	}
	assertCount(t, conn, "SELECT count(*) FROM hook.subscription WHERE format = 'bare' AND is_enabled AND headers = '{}'", 1)
}

func assertCount(t *testing.T, conn *pgx.Conn, q string, want int) {
	t.Helper()
	var got int
	if err := conn.QueryRow(t.Context(), q).Scan(&got); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if got != want {
		t.Fatalf("%s = %d, want %d", q, got, want)
	}
}

func TestNewDatabaseIsUnique(t *testing.T) {
	c := pgtest.StartCluster(t)
	a, b := pgtest.NewDatabase(t, c), pgtest.NewDatabase(t, c)
	if a == b {
		t.Fatalf("two NewDatabase calls returned %s", a)
	}
	connect(t, a)
	connect(t, b)
}

// Pointing WALHOOK_TEST_PG_URL at a server (here an embedded one) makes Start use it, and the
// database NewDatabase made there is dropped afterwards even with an active replication slot.
func TestExternalServerDatabaseIsDropped(t *testing.T) {
	outer := t
	c := pgtest.StartCluster(t)
	t.Setenv(pgtest.EnvURL, c.URL("postgres"))
	var name string
	t.Run("inner", func(t *testing.T) {
		srv := pgtest.Start(t)
		if srv.Cluster() != nil {
			t.Fatal("Start ignored " + pgtest.EnvURL)
		}
		url := pgtest.NewDatabase(t, srv)
		name = url[strings.LastIndexByte(url, '/')+1 : strings.IndexByte(url, '?')]
		repl := holdActiveSlot(t, url)
		waitSlotActive(t, connect(t, url))
		outer.Cleanup(func() { repl.Close(context.Background()) }) // after inner's drop
	})
	admin := connect(t, c.URL("postgres"))
	assertCount(t, admin, "SELECT count(*) FROM pg_stat_replication", 0) // the walsender was terminated
	assertCount(t, admin, "SELECT count(*) FROM pg_database WHERE datname = '"+name+"'", 0)
	assertCount(t, admin, "SELECT count(*) FROM pg_replication_slots", 0)
}

// holdActiveSlot streams from a new slot; the caller keeps the connection open past t's end, as a
// leaked cdc reader would.
func holdActiveSlot(t *testing.T, url string) *pgconn.PgConn {
	t.Helper()
	conn := connect(t, url)
	mustExec(t, conn, "CREATE PUBLICATION p FOR ALL TABLES")
	repl, err := pgconn.Connect(t.Context(), url+"&replication=database")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pglogrepl.CreateReplicationSlot(t.Context(), repl, "s", "pgoutput", pglogrepl.CreateReplicationSlotOptions{}); err != nil {
		repl.Close(context.Background())
		t.Fatal(err)
	}
	opts := pglogrepl.StartReplicationOptions{PluginArgs: []string{"proto_version '1'", "publication_names 'p'"}}
	if err := pglogrepl.StartReplication(t.Context(), repl, "s", 0, opts); err != nil {
		repl.Close(context.Background())
		t.Fatal(err)
	}
	return repl
}

func waitSlotActive(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var active bool
		if err := conn.QueryRow(t.Context(), "SELECT bool_or(active) FROM pg_replication_slots").Scan(&active); err != nil {
			t.Fatal(err)
		}
		if active {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("slot s never became active")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
