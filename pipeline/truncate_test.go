package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/kafkatest"
)

// truncStory writes transactions (TRUNCATE ones among them) through the real cdc and bubble-up
// stages and records, per root, every version it must get: verb and the object the database
// builds inside the transaction, just before its COMMIT. It reads the snapshot topic as it goes,
// so a test can wait for one version with a deadline, and checks every version at the end.
type truncStory struct {
	e     *e2e
	topic string
	// objectsSQL returns (id, tenant, json object) of every root in the table.
	objectsSQL string
	// gone returns, for a root the open transaction deleted and its object before the
	// transaction, the members of its object that come from other tables (subordinate arrays,
	// references) as the transaction leaves them: its last version shows its last row with those.
	gone   func(tx pgx.Tx, id int, before map[string]any) map[string]any
	oldNew bool // snapshot_form old_new: the payload is {"old", "new"}

	seq  int
	want map[int][]rootTxn
	cl   *kgo.Client
	got  map[int][]avro.Snapshot
	n    int // snapshots read
}

func newTruncStory(e *e2e, objectsSQL string, gone func(pgx.Tx, int, map[string]any) map[string]any, oldNew bool) *truncStory {
	topic := e.cfg.Kafka.SnapshotTopic(e.cfg.Model.Roots[0])
	return &truncStory{
		e: e, topic: topic, objectsSQL: objectsSQL, gone: gone, oldNew: oldNew, want: map[int][]rootTxn{},
		got: map[int][]avro.Snapshot{},
		cl: kafkatest.Client(e.t, e.env, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(kgo.ReadCommitted())),
	}
}

// txn runs stmts in one transaction. verbs names every root the transaction must give a version
// and its verb; no other root may get one.
func (s *truncStory) txn(verbs map[int]avro.Verb, stmts ...string) {
	t := s.e.t
	t.Helper()
	ctx := context.Background()
	tx, err := s.e.db.Begin(ctx)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	before := queryObjects(t, tx, s.objectsSQL)
	for _, stmt := range stmts {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			t.Fatalf("txn %d: %.120q: %v", s.seq, stmt, err)
		}
	}
	after := queryObjects(t, tx, s.objectsSQL)
	for id, verb := range verbs {
		rt := rootTxn{seq: s.seq, verb: verb}
		if o, ok := after[id]; ok {
			rt.obj = o.obj
		} else {
			o, ok := before[id]
			if !ok {
				t.Fatalf("txn %d: root %d is neither in the table before nor after the transaction", s.seq, id)
			}
			rt.obj, rt.gone = maps.Clone(o.obj), true
			maps.Copy(rt.obj, s.gone(tx, id, o.obj))
		}
		s.want[id] = append(s.want[id], rt)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("txn %d: commit: %v", s.seq, err)
	}
	s.seq++
}

// walLSN is the server's current WAL position.
func (s *truncStory) walLSN() string {
	s.e.t.Helper()
	var lsn string
	if err := s.e.db.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&lsn); err != nil {
		s.e.t.Fatalf("pg_current_wal_lsn: %v", err)
	}
	return lsn
}

// confirmedPast waits until the slot's confirmed_flush_lsn is at or past lsn.
func (s *truncStory) confirmedPast(lsn string, within time.Duration) {
	s.e.t.Helper()
	kafkatest.Eventually(s.e.t, within, func() error {
		var confirmed string
		var past bool
		err := s.e.db.QueryRow(context.Background(), `SELECT confirmed_flush_lsn::text, confirmed_flush_lsn >= $1::pg_lsn
			FROM pg_replication_slots WHERE slot_name = $2`, lsn, s.e.cfg.Postgres.Slot).Scan(&confirmed, &past)
		if err == nil && !past {
			err = fmt.Errorf("confirmed_flush_lsn %s, not yet at %s", confirmed, lsn)
		}
		return err
	})
}

// poll reads what the snapshot topic has within d.
func (s *truncStory) poll(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	fs := s.cl.PollFetches(ctx)
	fs.EachError(func(topic string, p int32, err error) {
		if !errors.Is(err, context.DeadlineExceeded) {
			s.e.t.Fatalf("fetch %s[%d]: %v", topic, p, err)
		}
	})
	for _, r := range fs.Records() {
		snap := s.e.decodeSnapshot(r)
		id, err := strconv.Atoi(snap.Key)
		if err != nil {
			s.e.t.Fatalf("snapshot key %q is not a root id", snap.Key)
		}
		s.got[id] = append(s.got[id], snap)
		s.n++
	}
}

// await waits until every root the last transaction gave a version has it, within d (a
// transaction after a TRUNCATE is delivered within seconds).
func (s *truncStory) await(d time.Duration) {
	s.e.t.Helper()
	deadline := time.Now().Add(d)
	for {
		missing := ""
		for id, txns := range s.want {
			if n := len(txns); txns[n-1].seq == s.seq-1 && len(s.got[id]) < n {
				missing = fmt.Sprintf("root %d v%d", id, n)
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			s.e.t.Fatalf("transaction %d not delivered within %v: %s missing; got %s", s.seq-1, d, missing, s.describeGot())
		}
		s.poll(250 * time.Millisecond)
	}
}

func (s *truncStory) describeGot() string {
	var b strings.Builder
	for _, id := range slices.Sorted(maps.Keys(s.got)) {
		fmt.Fprintf(&b, "%d:%s ", id, describeGot(s.got[id]))
	}
	return b.String()
}

// check waits until the slot confirmed everything written and nothing more arrived for 2s, then
// checks every version of every root: versions 1..n, one per transaction that must give one,
// its verb, its payload equal to the database's object in that transaction, and one commit LSN
// per transaction, increasing with the commit order.
func (s *truncStory) check() {
	t := s.e.t
	t.Helper()
	s.confirmedPast(s.walLSN(), 30*time.Second)
	quietSince, n := time.Now(), s.n
	for time.Since(quietSince) < 2*time.Second {
		s.poll(250 * time.Millisecond)
		if s.n != n {
			quietSince, n = time.Now(), s.n
		}
	}
	lsnOf := map[int]uint64{}
	for id := range s.got {
		if s.want[id] == nil {
			t.Errorf("root %d: snapshots %s, but no transaction should have given it one", id, describeGot(s.got[id]))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(s.want)) {
		want, got := s.want[id], s.got[id]
		if len(got) != len(want) {
			t.Errorf("root %d: %d snapshots %s, want %d %s", id, len(got), describeGot(got), len(want), describeWant(want))
			continue
		}
		var prevNew any
		for i, snap := range got {
			w := want[i]
			where := fmt.Sprintf("root %d v%d (txn %d)", id, i+1, w.seq)
			if snap.Version != int64(i+1) || snap.Verb != w.verb || snap.EventType != eventType(s, w.verb) {
				t.Errorf("%s: got version %d verb %s event type %s, want %s", where, snap.Version, snap.Verb, snap.EventType, w.verb)
			}
			if l, ok := lsnOf[w.seq]; ok && l != snap.CommitLSN {
				t.Errorf("%s: commit LSN %s, another root of the transaction has %s", where, lsnString(snap.CommitLSN), lsnString(l))
			}
			lsnOf[w.seq] = snap.CommitLSN
			var payload any
			if err := json.Unmarshal(snap.Payload, &payload); err != nil {
				t.Fatalf("%s: payload: %v", where, err)
			}
			var wantPayload any = w.obj
			if s.oldNew {
				wantPayload = map[string]any{"old": prevNew, "new": w.obj}
				prevNew = w.obj
			}
			if d := describeDiff(wantPayload, payload); d != "" {
				t.Errorf("%s %s: payload differs from the database's object in the transaction %s", where, w.verb, d)
			}
		}
	}
	seqs := slices.Sorted(maps.Keys(lsnOf))
	for i := 1; i < len(seqs); i++ {
		if lsnOf[seqs[i]] <= lsnOf[seqs[i-1]] {
			t.Errorf("txn %d has commit LSN %s, not above txn %d's %s", seqs[i], lsnString(lsnOf[seqs[i]]), seqs[i-1], lsnString(lsnOf[seqs[i-1]]))
		}
	}
}

func eventType(s *truncStory, v avro.Verb) string {
	return strings.ReplaceAll(s.e.cfg.Model.Roots[0].EventPrefix, ".", "_") + "_" + v.String()
}

// incidentGoneSQL is the session $2 and the timeline of incident $1 as the open transaction
// sees them.
var incidentGoneSQL = strings.ReplaceAll(`SELECT json_build_object(
	'session', (SELECT `+sessionObjectSQL+` FROM session.instance s WHERE s.id = $2),
	'timeline', COALESCE((SELECT json_agg(json_build_object('id', tl.id, 'action', tl.action, 'description', tl.description,
			'created_at', to_char(tl.created_at AT TIME ZONE 'UTC', ISO), 'created_by', tl.created_by,
			'updated_at', to_char(tl.updated_at AT TIME ZONE 'UTC', ISO), 'updated_by', tl.updated_by) ORDER BY tl.id)
		FROM incident.timeline tl WHERE tl.incident_instance_id = $1 AND NOT tl.is_deleted), '[]'::json))::text`, "ISO", isoMillis)

// goneMembers runs a query of one JSON object with args in tx.
func goneMembers(t *testing.T, tx pgx.Tx, sql string, args ...any) map[string]any {
	t.Helper()
	var text string
	if err := tx.QueryRow(context.Background(), sql, args...).Scan(&text); err != nil {
		t.Fatalf("members of a deleted root: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(text), &m); err != nil {
		t.Fatalf("members of a deleted root: %v\n%s", err, text)
	}
	return m
}

// TestTruncateEndToEnd truncates each table kind of the demo model through PostgreSQL, the cdc
// stage and bubble-up, and checks every version: a TRUNCATE of the subordinate table (with rows
// of the same transaction before and after it) gives an updated version to every incident that
// had timeline rows; of the reference table, no version and session null in later snapshots (a
// session inserted after the TRUNCATE in the same transaction shows); TRUNCATE session, incident
// CASCADE (reference, root and subordinate in one statement) one deleted version per incident;
// of the root table alone, a deleted version per incident with its timeline. After each, the next
// ordinary transaction is delivered within seconds and the slot's confirmed_flush_lsn passes it.
func TestTruncateEndToEnd(t *testing.T) {
	e := startE2E(t, demo.ModelYAML, demo.SchemaSQL)
	// session.instance belongs to another service: its rows can go while incidents point at them.
	e.exec(`ALTER TABLE incident.instance DROP CONSTRAINT instance_session_instance_id_fkey`)
	s := newTruncStory(e, incidentObjectsSQL, func(tx pgx.Tx, id int, before map[string]any) map[string]any {
		return goneMembers(t, tx, incidentGoneSQL, id, before["session_instance_id"])
	}, false)

	session := func(id int, status string) string {
		return fmt.Sprintf(`INSERT INTO session.instance (id, score, status, tenant_id) VALUES (%d, %d, '%s', 'acme')`, id, id%90, status)
	}
	incident := func(id, session int) string {
		return fmt.Sprintf(`INSERT INTO incident.instance (id, name, status, severity, start_time, session_instance_id, tenant_id)
			VALUES (%d, 'incident %d', 'TRIGGERED', 'LOW', '2026-02-03 10:46:23.26+00', %d, 'acme')`, id, id, session)
	}
	timeline := func(id, incident int, deleted bool) string {
		return fmt.Sprintf(`INSERT INTO incident.timeline (id, incident_instance_id, action, description, is_deleted, tenant_id)
			VALUES (%d, %d, 'COMMENTED', 'row %d', %t, 'acme')`, id, incident, id, deleted)
	}
	created, updated, deleted := avro.VerbCreated, avro.VerbUpdated, avro.VerbDeleted

	// Incidents 1-8 over the three partitions: 1-3 with timeline rows, 4 without, 5 with only a
	// soft-deleted one, 6 soft-deleted with a timeline row, 7-8 without.
	s.txn(map[int]avro.Verb{}, session(101, "IN_PROGRESS"), session(102, "SCHEDULED"))
	for id := 1; id <= 8; id++ {
		s.txn(map[int]avro.Verb{id: created}, incident(id, 101+id%2))
	}
	s.txn(map[int]avro.Verb{1: updated, 2: updated, 3: updated, 5: updated, 6: updated},
		timeline(11, 1, false), timeline(12, 1, false), timeline(21, 2, false), timeline(31, 3, false),
		timeline(51, 5, true), timeline(61, 6, false))
	s.txn(map[int]avro.Verb{6: deleted}, `UPDATE incident.instance SET is_deleted = true WHERE id = 6`)
	s.await(30 * time.Second)

	// Subordinate: a row of 1 updated before the TRUNCATE, a row of 2 inserted after it; 3, 5
	// and 6 had rows; 4, 7 and 8 had none.
	s.txn(map[int]avro.Verb{1: updated, 2: updated, 3: updated, 5: updated, 6: updated},
		`UPDATE incident.timeline SET description = 'edited' WHERE id = 11`,
		`TRUNCATE incident.timeline`,
		timeline(22, 2, false))
	lsn := s.walLSN()
	s.await(20 * time.Second)
	s.txn(map[int]avro.Verb{4: updated}, timeline(41, 4, false))
	s.await(15 * time.Second)
	s.confirmedPast(lsn, 15*time.Second)

	// A transaction PostgreSQL streams before its commit (past logical_decoding_work_mem): many
	// timeline rows, the TRUNCATE, one row after it. cdc replays it from its spill at commit.
	e.exec(`ALTER SYSTEM SET logical_decoding_work_mem = '64kB'`)
	e.exec(`SELECT pg_reload_conf()`)
	s.txn(map[int]avro.Verb{1: updated, 2: updated, 3: updated, 4: updated, 7: updated},
		`INSERT INTO incident.timeline (id, incident_instance_id, action, description, tenant_id)
			SELECT 1000 + g, 1 + g % 3, 'COMMENTED', repeat('x', 200), 'acme' FROM generate_series(1, 2000) g`,
		`TRUNCATE incident.timeline`,
		timeline(71, 7, false))
	s.await(30 * time.Second)
	var streamed int64
	if err := e.db.QueryRow(context.Background(), `SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = $1`,
		e.cfg.Postgres.Slot).Scan(&streamed); err != nil || streamed == 0 {
		t.Fatalf("PostgreSQL streamed %d transactions before their commit (%v), want the bulk one", streamed, err)
	}
	e.exec(`ALTER SYSTEM RESET logical_decoding_work_mem`)
	e.exec(`SELECT pg_reload_conf()`)

	// Reference: no version; the next transactions show session null, or the session inserted
	// after the TRUNCATE in its transaction.
	s.txn(map[int]avro.Verb{}, `TRUNCATE session.instance`)
	lsn = s.walLSN()
	s.txn(map[int]avro.Verb{1: updated}, `UPDATE incident.instance SET name = 'after the session truncate' WHERE id = 1`)
	s.await(15 * time.Second)
	s.confirmedPast(lsn, 15*time.Second)
	s.txn(map[int]avro.Verb{2: updated, 3: updated},
		`TRUNCATE session.instance`, session(102, "COMPLETED"),
		`UPDATE incident.instance SET name = 'session 102 again' WHERE id IN (2, 3)`)
	s.await(15 * time.Second)
	// A session written before the TRUNCATE in its transaction is gone with the rest.
	s.txn(map[int]avro.Verb{4: updated},
		session(104, "IN_PROGRESS"), `UPDATE incident.instance SET session_instance_id = 104 WHERE id = 4`, `TRUNCATE session.instance`)
	s.await(15 * time.Second)
	s.txn(map[int]avro.Verb{4: updated}, `UPDATE incident.instance SET name = 'after session 104 went' WHERE id = 4`)
	s.await(15 * time.Second)

	// Reference, root and subordinate in one statement: one deleted version per incident (the
	// soft-deleted 6 too: its row goes), session null, timeline [].
	all := map[int]avro.Verb{}
	for id := 1; id <= 8; id++ {
		all[id] = deleted
	}
	s.txn(all, `TRUNCATE session.instance, incident.instance CASCADE`)
	lsn = s.walLSN()
	s.await(20 * time.Second)
	s.confirmedPast(lsn, 15*time.Second)
	// The next ordinary transactions: a new incident, and incident 1 inserted again (created,
	// its versions continue).
	s.txn(map[int]avro.Verb{9: created, 1: created}, session(103, "IN_PROGRESS"), incident(9, 103), incident(1, 103))
	s.await(15 * time.Second)

	// Root table alone (no foreign key from the timeline): a deleted version per incident, with
	// the timeline rows that stay in the database.
	e.exec(`ALTER TABLE incident.timeline DROP CONSTRAINT timeline_incident_instance_id_fkey`)
	s.txn(map[int]avro.Verb{9: updated}, timeline(91, 9, false))
	s.txn(map[int]avro.Verb{1: deleted, 9: deleted}, `TRUNCATE incident.instance`)
	lsn = s.walLSN()
	s.await(20 * time.Second)
	s.txn(map[int]avro.Verb{10: created}, incident(10, 103))
	s.await(15 * time.Second)
	s.confirmedPast(lsn, 15*time.Second)
	s.check()
}

const talentSchemaSQL = `
CREATE SCHEMA talent;
CREATE TABLE talent.candidate (id bigint PRIMARY KEY, name text, tenant_id text NOT NULL, is_deleted boolean NOT NULL DEFAULT false);
CREATE TABLE talent.project (id bigint PRIMARY KEY, candidate_id bigint NOT NULL REFERENCES talent.candidate (id), title text,
	started_on date, tenant_id text NOT NULL, is_deleted boolean NOT NULL DEFAULT false);
CREATE TABLE talent.technology (id bigint PRIMARY KEY, project_id bigint NOT NULL REFERENCES talent.project (id), name text,
	tenant_id text NOT NULL, is_deleted boolean NOT NULL DEFAULT false);
`

// talentProjectsSQL is the projects array of candidate c.id, nested technologies included.
const talentProjectsSQL = `COALESCE((SELECT json_agg(json_build_object('id', p.id, 'title', p.title, 'started_on', p.started_on,
		'technologies', COALESCE((SELECT json_agg(json_build_object('id', te.id, 'name', te.name) ORDER BY te.id)
			FROM talent.technology te WHERE te.project_id = p.id AND NOT te.is_deleted), '[]'::json)) ORDER BY p.started_on, p.id)
	FROM talent.project p WHERE p.candidate_id = c.id AND NOT p.is_deleted), '[]'::json)`

const talentObjectsSQL = `SELECT c.id, c.tenant_id, json_build_object('id', c.id, 'name', c.name, 'projects', ` + talentProjectsSQL + `)::text
	FROM talent.candidate c`

// TestTruncateNestedEndToEnd truncates the tables of a root with nested subordinates (a
// candidate's projects, each with technologies; snapshot form old_new) through PostgreSQL and
// the cdc stage: the nested table (an updated version for every candidate that had
// technologies), the intermediate one with CASCADE (one updated version per candidate, though
// two tables were truncated), then project keys reused under other candidates (the key index
// the nested rows are routed by follows), and the root with CASCADE (a deleted version each).
func TestTruncateNestedEndToEnd(t *testing.T) {
	e := startE2E(t, candidateModel, talentSchemaSQL)
	s := newTruncStory(e, talentObjectsSQL, func(tx pgx.Tx, id int, _ map[string]any) map[string]any {
		return goneMembers(t, tx, `SELECT json_build_object('projects', `+talentProjectsSQL+`)::text FROM (SELECT $1::bigint AS id) c`, id)
	}, true)
	candidate := func(id int) string {
		return fmt.Sprintf(`INSERT INTO talent.candidate (id, name, tenant_id) VALUES (%d, 'candidate %d', 'acme')`, id, id)
	}
	project := func(id, candidate int, started string) string {
		return fmt.Sprintf(`INSERT INTO talent.project (id, candidate_id, title, started_on, tenant_id) VALUES (%d, %d, 'project %d', '%s', 'acme')`,
			id, candidate, id, started)
	}
	technology := func(id, project int, deleted bool) string {
		return fmt.Sprintf(`INSERT INTO talent.technology (id, project_id, name, is_deleted, tenant_id) VALUES (%d, %d, 'tech %d', %t, 'acme')`,
			id, project, id, deleted)
	}
	created, updated, deleted := avro.VerbCreated, avro.VerbUpdated, avro.VerbDeleted

	for id := 1; id <= 5; id++ {
		s.txn(map[int]avro.Verb{id: created}, candidate(id))
	}
	s.txn(map[int]avro.Verb{1: updated, 2: updated, 3: updated, 5: updated},
		project(11, 1, "2025-03-01"), project(12, 1, "2024-01-01"), technology(111, 11, false), technology(112, 11, false),
		project(21, 2, "2024-05-05"), technology(211, 21, false), project(31, 3, "2023-01-01"),
		project(51, 5, "2022-02-02"), technology(511, 51, true))
	s.await(30 * time.Second)

	// The nested table: 1, 2 and 5 (a soft-deleted row) had technologies, 3 and 4 none.
	s.txn(map[int]avro.Verb{1: updated, 2: updated, 5: updated}, `TRUNCATE talent.technology`)
	lsn := s.walLSN()
	s.await(20 * time.Second)
	s.txn(map[int]avro.Verb{3: updated}, technology(311, 31, false))
	s.await(15 * time.Second)
	s.confirmedPast(lsn, 15*time.Second)

	// The intermediate table with CASCADE: projects and technologies in one statement.
	s.txn(map[int]avro.Verb{1: updated, 2: updated, 3: updated, 5: updated}, `TRUNCATE talent.project CASCADE`)
	lsn = s.walLSN()
	s.await(20 * time.Second)
	// Project 11 comes back under candidate 4: its technology follows it there.
	s.txn(map[int]avro.Verb{1: updated, 4: updated},
		project(13, 1, "2026-01-01"), technology(131, 13, false), project(11, 4, "2026-02-02"), technology(113, 11, false))
	s.await(15 * time.Second)
	s.confirmedPast(lsn, 15*time.Second)

	// The root with CASCADE: a deleted version per candidate, then the next one is created.
	s.txn(map[int]avro.Verb{1: deleted, 2: deleted, 3: deleted, 4: deleted, 5: deleted}, `TRUNCATE talent.candidate CASCADE`)
	lsn = s.walLSN()
	s.await(20 * time.Second)
	s.txn(map[int]avro.Verb{6: created}, candidate(6), project(61, 6, "2026-03-03"), technology(611, 61, false))
	s.await(15 * time.Second)
	s.confirmedPast(lsn, 15*time.Second)
	s.check()
}

// TestTruncateAfterInitialSnapshot truncates tables whose rows bubble-up knows only from the cdc
// stage's initial snapshot (reads, which emit nothing): a TRUNCATE of the timeline gives version
// 1, updated, to every incident that had timeline rows; then one of the incident table with
// CASCADE gives each incident its deleted version, the next after what it had.
func TestTruncateAfterInitialSnapshot(t *testing.T) {
	var rows strings.Builder
	rows.WriteString(`INSERT INTO session.instance (id, score, status, tenant_id) VALUES (201, 50, 'IN_PROGRESS', 'acme');`)
	for id := 1; id <= 6; id++ {
		fmt.Fprintf(&rows, `INSERT INTO incident.instance (id, name, status, severity, start_time, session_instance_id, tenant_id)
			VALUES (%d, 'before the slot %d', 'TRIGGERED', 'LOW', '2026-02-03 10:46:23.26+00', 201, 'acme');`, id, id)
		if id%2 == 1 {
			fmt.Fprintf(&rows, `INSERT INTO incident.timeline (id, incident_instance_id, action, tenant_id) VALUES (%d, %d, 'DETECTED', 'acme');`, 10*id, id)
		}
	}
	e := startE2E(t, demo.ModelYAML, demo.SchemaSQL+rows.String())
	// Wait for the snapshot's transaction end of every incident (walhook-op: read) and for the
	// read of their session (the reference table is read after the roots; a snapshot before its
	// read would show it null, reported as inexact).
	cl := kafkatest.Client(t, e.env, kgo.ConsumeTopics(e.cfg.Kafka.ChangeTopic(e.cfg.Model.Roots[0]), e.cfg.Kafka.ReferenceTopic("session.instance")),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	read := map[string]bool{}
	kafkatest.Eventually(t, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		defer cancel()
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if header(r, headerOp) == "read" && (header(r, headerKind) == "txn-end" || r.Topic == e.cfg.Kafka.ReferenceTopic("session.instance")) {
				read[r.Topic+"/"+string(r.Key)] = true
			}
		})
		if len(read) < 7 {
			return fmt.Errorf("initial snapshot: %d of 6 incidents and their session read", len(read))
		}
		return nil
	})

	s := newTruncStory(e, incidentObjectsSQL, func(tx pgx.Tx, id int, before map[string]any) map[string]any {
		return goneMembers(t, tx, incidentGoneSQL, id, before["session_instance_id"])
	}, false)
	s.txn(map[int]avro.Verb{1: avro.VerbUpdated, 3: avro.VerbUpdated, 5: avro.VerbUpdated}, `TRUNCATE incident.timeline`)
	s.await(20 * time.Second)
	s.txn(map[int]avro.Verb{2: avro.VerbUpdated}, `UPDATE incident.instance SET name = 'changed' WHERE id = 2`)
	s.await(15 * time.Second)
	all := map[int]avro.Verb{}
	for id := 1; id <= 6; id++ {
		all[id] = avro.VerbDeleted
	}
	s.txn(all, `TRUNCATE incident.instance CASCADE`)
	s.await(20 * time.Second)
	s.check()
}

// truncateRecords are the records the cdc stage writes for a transaction at lsn that only
// truncates table, a table of root: a truncate record and, after it, a truncate-end on every
// partition of the root's change topic.
func (f *fakeCDC) truncateRecords(lsn uint64, xid uint32, table string) []*kgo.Record {
	return append(f.truncates(lsn, table), f.truncateEnds(lsn, xid, f.roots[table])...)
}

// truncates are the truncate records of table at lsn, one per partition.
func (f *fakeCDC) truncates(lsn uint64, table string) []*kgo.Record {
	topic := f.cfg.Kafka.ChangeTopic(*f.roots[table])
	at := time.Date(2026, 2, 3, 11, 15, 0, 0, time.UTC)
	var recs []*kgo.Record
	for p := int32(0); p < f.cfg.Kafka.Partitions; p++ {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Key: []byte("walhook.truncate." + lsnText(lsn)), Headers: headers("truncate", table, "", lsn),
			Value: f.framed(topic, f.wmSchema, avro.AppendWatermark(nil, avro.Watermark{CommitLSN: lsn, Time: at}))})
	}
	return recs
}

// truncateEnds are the truncate-end records of root's change topic at lsn, then the
// transaction's reference watermarks.
func (f *fakeCDC) truncateEnds(lsn uint64, xid uint32, root *config.Root) []*kgo.Record {
	topic := f.cfg.Kafka.ChangeTopic(*root)
	at := time.Date(2026, 2, 3, 11, 15, 0, 0, time.UTC)
	key := []byte("walhook.truncate." + lsnText(lsn))
	var recs []*kgo.Record
	for p := int32(0); p < f.cfg.Kafka.Partitions; p++ {
		body := avro.AppendTxnEnd(nil, avro.TxnEnd{Table: root.Table, CommitLSN: lsn, Xid: xid, CommitTime: at})
		recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Key: key, Headers: headers("truncate-end", root.Table, "", lsn),
			Value: f.framed(topic, f.endSchema, body)})
	}
	return append(recs, f.watermarks(lsn, at)...)
}

// TestTruncateReplayIsSkipped writes a TRUNCATE of the timeline twice, as the cdc stage does
// when it restarts before PostgreSQL confirmed it: the second is at or below every root's
// applied LSN and gives no version; the transactions after it continue the versions.
func TestTruncateReplayIsSkipped(t *testing.T) {
	env := kafkatest.Start(t)
	cfg := testConfig(t, env, demoModel)
	reg := testRegistry(t, env)
	cdc := newFakeCDC(t, env, cfg, reg, demoTables)
	runStage(t, cfg, reg)

	incident := func(id string) map[string]string {
		inc := seedIncident()
		inc["id"] = id
		return inc
	}
	timeline := func(id, incident string) map[string]string {
		return map[string]string{"id": id, "incident_instance_id": incident, "action": "DETECTED", "is_deleted": "f", "tenant_id": "acme"}
	}
	cdc.txn(change{table: "session.instance", op: avro.OpCreate, key: "2523", after: seedSession()},
		change{table: "incident.instance", op: avro.OpCreate, key: "1", after: incident("1")},
		change{table: "incident.instance", op: avro.OpCreate, key: "2", after: incident("2")},
		change{table: "incident.instance", op: avro.OpCreate, key: "3", after: incident("3")})
	cdc.txn(change{table: "incident.timeline", op: avro.OpCreate, key: "1", after: timeline("11", "1")},
		change{table: "incident.timeline", op: avro.OpCreate, key: "2", after: timeline("21", "2")})
	cdc.lsn += 0x100
	cdc.xid++
	truncLSN := cdc.lsn
	recs := cdc.truncateRecords(truncLSN, cdc.xid, "incident.timeline")
	produce := func() {
		if err := cdc.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	produce()
	readd := []change{{table: "incident.timeline", op: avro.OpCreate, key: "1", after: timeline("12", "1")}}
	readdLSN := cdc.txn(readd...)
	// The restart: both transactions again.
	produce()
	cdc.txnAt(readdLSN, cdc.xid, readd...)
	last := cdc.txn(change{table: "incident.instance", op: avro.OpUpdate, key: "1", after: incident("1")},
		change{table: "incident.instance", op: avro.OpUpdate, key: "2", after: incident("2")},
		change{table: "incident.instance", op: avro.OpUpdate, key: "3", after: incident("3")})

	snaps := snapshots(t, env, reg, cfg.Kafka.SnapshotTopic(cfg.Model.Roots[0]), 11)
	checkVersions(t, snaps)
	byKey := map[string][]avro.Snapshot{}
	for _, s := range snaps {
		byKey[s.Key] = append(byKey[s.Key], s)
	}
	// Roots 1 and 2: created, updated (the timeline row), updated at the TRUNCATE, (1: updated
	// with the row added after it), updated at the last transaction; root 3 had no timeline
	// row: created, updated at the last.
	want := map[string][]uint64{"1": {truncLSN, readdLSN, last}, "2": {truncLSN, last}, "3": {last}}
	for key, wantLSN := range want {
		got := byKey[key]
		if n := map[string]int{"1": 5, "2": 4, "3": 2}[key]; len(got) != n {
			t.Fatalf("root %s: %s, want %d versions ending with updated at %v", key, describeGot(got), n, wantLSN)
		}
		for i, lsn := range wantLSN {
			s := got[len(got)-len(wantLSN)+i]
			if s.CommitLSN != lsn || s.Verb != avro.VerbUpdated {
				t.Fatalf("root %s: %s, want updated versions at %s", key, describeGot(got), lsnText(lsn))
			}
		}
		wantRows := map[string]int{"1": 1}[key] // the row added after the TRUNCATE stays
		if tl := mustJSON(t, got[len(got)-1].Payload).(map[string]any)["timeline"].([]any); len(tl) != wantRows {
			t.Fatalf("root %s: timeline %v after the TRUNCATE, want %d rows", key, tl, wantRows)
		}
	}
}

// TestTruncateReemitReference truncates a reference table whose reference re-emits (reemit:
// true): every incident pointing at a session that was there gets one updated version at the
// truncating transaction, with session null; one the transaction changed itself gets only that
// version; incidents pointing at no live session get nothing. A session inserted again after
// the TRUNCATE shows in the next versions.
func TestTruncateReemitReference(t *testing.T) {
	e := startE2E(t, reemitModel(t), demo.SchemaSQL)
	e.exec(`ALTER TABLE incident.instance DROP CONSTRAINT instance_session_instance_id_fkey`)
	s := newTruncStory(e, incidentObjectsSQL, nil, false)
	session := func(id int) string {
		return fmt.Sprintf(`INSERT INTO session.instance (id, score, status, tenant_id) VALUES (%d, %d, 'IN_PROGRESS', 'acme')`, id, id%90)
	}
	incident := func(id, session int) string {
		return fmt.Sprintf(`INSERT INTO incident.instance (id, name, status, severity, start_time, session_instance_id, tenant_id)
			VALUES (%d, 'incident %d', 'TRIGGERED', 'LOW', '2026-02-03 10:46:23.26+00', %d, 'acme')`, id, id, session)
	}
	s.txn(map[int]avro.Verb{}, session(101), session(102))
	s.txn(map[int]avro.Verb{1: avro.VerbCreated, 2: avro.VerbCreated, 3: avro.VerbCreated, 4: avro.VerbCreated},
		incident(1, 101), incident(2, 102), incident(3, 101), incident(4, 999))
	s.await(20 * time.Second)
	// 1-3 point at live sessions (3 is also changed by the transaction); 4 at none.
	s.txn(map[int]avro.Verb{1: avro.VerbUpdated, 2: avro.VerbUpdated, 3: avro.VerbUpdated},
		`UPDATE incident.instance SET name = 'changed with the truncate' WHERE id = 3`, `TRUNCATE session.instance`)
	lsn := s.walLSN()
	s.await(20 * time.Second)
	s.confirmedPast(lsn, 15*time.Second)
	// The session back: re-emitted again, as any change of a referenced row.
	s.txn(map[int]avro.Verb{1: avro.VerbUpdated, 3: avro.VerbUpdated}, session(101))
	s.await(20 * time.Second)
	s.check()
}

// TestTruncateManyRoots truncates a root table of 20,000 incidents (CASCADE, with their
// timelines): one deleted version each, every one checked, and the next transaction after it
// delivered within seconds.
func TestTruncateManyRoots(t *testing.T) {
	e := startE2E(t, demo.ModelYAML, demo.SchemaSQL)
	s := newTruncStory(e, incidentObjectsSQL, func(tx pgx.Tx, id int, before map[string]any) map[string]any {
		return map[string]any{"timeline": []any{}, "session": before["session"]}
	}, false)
	const roots = 20000
	all := map[int]avro.Verb{}
	for id := 1; id <= roots; id++ {
		all[id] = avro.VerbCreated
	}
	s.txn(all, `INSERT INTO session.instance (id, score, status, tenant_id) VALUES (1, 1, 'IN_PROGRESS', 'acme')`,
		fmt.Sprintf(`INSERT INTO incident.instance (id, name, status, severity, start_time, session_instance_id, tenant_id)
			SELECT g, 'incident ' || g, 'TRIGGERED', 'LOW', '2026-02-03 10:46:23.26+00', 1, 'acme' FROM generate_series(1, %d) g`, roots))
	s.await(120 * time.Second)
	for id := range all {
		all[id] = avro.VerbDeleted
	}
	began := time.Now()
	s.txn(all, `TRUNCATE incident.instance CASCADE`)
	s.await(120 * time.Second)
	t.Logf("%d deleted versions in %v", roots, time.Since(began).Round(time.Millisecond))
	s.txn(map[int]avro.Verb{roots + 1: avro.VerbCreated}, `INSERT INTO incident.instance (id, name, status, severity, start_time, session_instance_id, tenant_id)
		VALUES (`+strconv.Itoa(roots+1)+`, 'next', 'TRIGGERED', 'LOW', '2026-02-03 10:46:23.26+00', 1, 'acme')`)
	s.await(15 * time.Second)
	s.check()
}

// TestTruncateSplitOverKafkaTransactions: the truncate records of one TRUNCATE ... CASCADE (the
// incident table, then the timeline) reach bubble-up in two Kafka transactions, the first
// committed before the second is read: the truncate-end still ends every root, the ones the
// first record left pending in the committed state included.
func TestTruncateSplitOverKafkaTransactions(t *testing.T) {
	env := kafkatest.Start(t)
	cfg := testConfig(t, env, demoModel)
	reg := testRegistry(t, env)
	cdc := newFakeCDC(t, env, cfg, reg, demoTables)
	runStage(t, cfg, reg)
	incident := func(id string) map[string]string {
		inc := seedIncident()
		inc["id"] = id
		return inc
	}
	cdc.txn(change{table: "session.instance", op: avro.OpCreate, key: "2523", after: seedSession()},
		change{table: "incident.instance", op: avro.OpCreate, key: "1", after: incident("1")},
		change{table: "incident.instance", op: avro.OpCreate, key: "2", after: incident("2")},
		change{table: "incident.instance", op: avro.OpCreate, key: "3", after: incident("3")},
		change{table: "incident.timeline", op: avro.OpCreate, key: "1", after: map[string]string{
			"id": "11", "incident_instance_id": "1", "action": "DETECTED", "is_deleted": "f", "tenant_id": "acme"}})
	snapshots(t, env, reg, cfg.Kafka.SnapshotTopic(cfg.Model.Roots[0]), 3)

	cdc.lsn += 0x100
	cdc.xid++
	produce := func(recs []*kgo.Record) {
		if err := cdc.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	produce(cdc.truncates(cdc.lsn, "incident.instance"))
	// Wait until bubble-up committed its offsets past them: their effect is in the committed state.
	adm := kadm.NewClient(cdc.cl)
	topic := cfg.Kafka.ChangeTopic(cfg.Model.Roots[0])
	kafkatest.Eventually(t, 30*time.Second, func() error {
		ends, err := adm.ListEndOffsets(context.Background(), topic)
		if err != nil {
			return err
		}
		committed, err := adm.FetchOffsets(context.Background(), cfg.BubbleUpGroup())
		if err != nil {
			return err
		}
		var behind []string
		ends.Each(func(o kadm.ListedOffset) {
			if c, ok := committed.Lookup(topic, o.Partition); !ok || c.At < o.Offset {
				behind = append(behind, fmt.Sprintf("partition %d at %d of %d", o.Partition, c.At, o.Offset))
			}
		})
		if len(behind) > 0 {
			return fmt.Errorf("bubble-up has not committed %v", behind)
		}
		return nil
	})
	produce(append(cdc.truncates(cdc.lsn, "incident.timeline"), cdc.truncateEnds(cdc.lsn, cdc.xid, &cfg.Model.Roots[0])...))
	snaps := snapshots(t, env, reg, cfg.Kafka.SnapshotTopic(cfg.Model.Roots[0]), 6)
	checkVersions(t, snaps)
	deleted := map[string]bool{}
	for _, s := range snaps {
		if s.Version == 2 && s.Verb == avro.VerbDeleted && s.CommitLSN == cdc.lsn {
			deleted[s.Key] = true
		}
	}
	if len(deleted) != 3 {
		t.Fatalf("after the TRUNCATE: %s, want a deleted v2 of each root at %s", describeGot(snaps), lsnText(cdc.lsn))
	}
}
