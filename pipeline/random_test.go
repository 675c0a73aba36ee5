package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/embedkafka"
	"github.com/walhook/walhook/internal/kafkatest"
)

// TestRandomChaosInvariants is the randomized validator of every version (issues 4 and 13). A
// seeded nemesis runs a few thousand transactions against the demo schema (touch trigger on)
// through the real cdc stage and the real bubble-up stage: sessions and incidents of several
// tenants created, updated and deleted (soft and hard), sessions updated in transactions that touch
// no incident and deleted while incidents still point at them, incidents repointed to another
// session, timeline rows inserted, updated, soft- and hard-deleted, now and then the timeline
// table truncated (every incident with timeline rows gets a version), rarely the incident table
// truncated with CASCADE (every incident gets its deleted version), 1–4 operations per transaction,
// often on several roots, sometimes an incident and its session together, and now and then a bulk
// transaction on a second connection that PostgreSQL streams before its commit while ordinary
// transactions commit in between. Twice the bubble-up member is stopped for a burst of
// transactions and started again (a new member that restores from the changelog and rebuilds its
// reference store from the reference topic, far behind it), and for a stretch a second member
// shares the group (two rebalances). Once the pipeline is quiescent it checks invariants rather
// than expected slices:
//
//   - every root's versions are 1..n in offset order, one per source transaction that touched the
//     root or a timeline row of it (a transaction touching only a session emits nothing: reemit
//     is off in the demo model);
//   - each version's verb is the writer's (created when inserted, deleted on a soft or hard
//     delete, updated otherwise), its event type and tenant match, and all roots of one source
//     transaction carry the same commit LSN, strictly increasing with the writer's commit order;
//   - version n's payload equals, member for member, the object the database built by SQL
//     (json_build_object, json_agg, the session joined as it stood) inside the n-th source
//     transaction that touched the root, just before its COMMIT: references as of the
//     transaction, not as of the time bubble-up got to it (for a hard delete, the object just
//     before the row's DELETE, with the session as it stood at the COMMIT);
//   - the last payload of every root still in the table (soft-deleted ones included), session
//     aside, equals the object built by one json_build_object/json_agg query over the final
//     database.
//
// The demo schema's foreign key from incident.instance.session_instance_id to session.instance
// is dropped: the session table belongs to another service, whose rows can be deleted while
// incidents still point at them (the payload then shows session null).
//
// The seed is printed; WALHOOK_SEED=<seed> replays the same operations. The default run is 2,000
// transactions; WALHOOK_CHAOS=1 (`make chaos`) runs 20,000.
func TestRandomChaosInvariants(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("WALHOOK_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("WALHOOK_SEED=%q: want a decimal uint64: %v", s, err)
		}
		seed = v
	}
	txns, quiesce := 2000, 3*time.Minute
	if os.Getenv("WALHOOK_CHAOS") != "" {
		txns, quiesce = 20000, 20*time.Minute
	}
	t.Logf("seed %d (replay with WALHOOK_SEED=%d), %d transactions", seed, seed, txns)

	// kfake compacts every second whatever min.compaction.lag.ms says; the reference history a
	// member restarted behind needs must survive, as Apache Kafka keeps it (docs/configuration.md
	// "bubbleup.reference_history").
	e := startE2EWith(t, demo.ModelYAML, demo.SchemaSQL, e2eOptions{kafka: []kafkatest.Option{
		kafkatest.WithOptions(embedkafka.Options{CleanerBackoff: embedkafka.NoCompaction})}})
	e.exec(`ALTER TABLE incident.instance DROP CONSTRAINT instance_session_instance_id_fkey`)
	kafkatest.Eventually(t, 60*time.Second, func() error {
		var active bool
		err := e.db.QueryRow(context.Background(), `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, e.cfg.Postgres.Slot).Scan(&active)
		if err != nil || !active {
			return fmt.Errorf("slot %s not streamed yet (%v)", e.cfg.Postgres.Slot, err)
		}
		return nil
	})

	// Transactions past 64kB are streamed by PostgreSQL before they commit: the nemesis's bulk
	// transactions take that path, interleaved with ordinary ones.
	e.exec(`ALTER SYSTEM SET logical_decoding_work_mem = '64kB'`)
	e.exec(`SELECT pg_reload_conf()`)
	bulkDB, err := pgx.Connect(context.Background(), e.cfg.Postgres.URL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = bulkDB.Close(context.Background()) })

	n := newNemesis(t, e.db, bulkDB, seed)
	began := time.Now()
	// Bubble-up is stopped for a burst at 30 % and 70 % of the run, and a second member shares
	// the group from 45 % to 60 %.
	var stopSecond func() error
	paused := 0
	for n.seq < txns {
		switch {
		case paused < 2 && n.seq >= txns*(3+4*paused)/10:
			paused++
			if err := e.stopStage(); err != nil {
				t.Fatalf("stop bubble-up for burst %d: %v", paused, err)
			}
			burst := n.seq + txns/10
			for n.seq < burst {
				n.txn()
			}
			t.Logf("burst %d: transactions %d-%d written while bubble-up was stopped", paused, burst-txns/10, burst-1)
			e.startStage()
			continue
		case stopSecond == nil && n.seq >= txns*45/100 && n.seq < txns*6/10:
			stopSecond = runStage(t, e.cfg, e.reg)
		case stopSecond != nil && n.seq >= txns*6/10:
			if err := stopSecond(); err != nil {
				t.Fatalf("second member: %v", err)
			}
			stopSecond = func() error { return nil }
		}
		if n.rng.IntN(100) == 0 {
			n.bulkTxn()
		} else {
			n.txn()
		}
	}
	var target string
	if err := e.db.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&target); err != nil {
		t.Fatalf("pg_current_wal_lsn: %v", err)
	}
	want := n.expectedSnapshots()
	t.Logf("workload: %d transactions, %d roots, %d snapshots expected, WAL at %s, in %v; operations %v",
		txns, len(n.incidents), want, target, time.Since(began).Round(time.Millisecond), n.ops)

	var streamed int64
	if err := e.db.QueryRow(context.Background(), `SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = $1`,
		e.cfg.Postgres.Slot).Scan(&streamed); err != nil {
		t.Fatalf("pg_stat_replication_slots: %v", err)
	}
	t.Logf("PostgreSQL streamed %d transactions to the slot before their commit", streamed)

	snaps := e.quiescentSnapshots(e.cfg.Kafka.SnapshotTopic(e.cfg.Model.Roots[0]), target, want, quiesce)
	t.Logf("consumed %d snapshots, %v after the workload began", len(snaps), time.Since(began).Round(time.Millisecond))

	problems := n.validate(snaps, n.finalObjects())
	t.Logf("%d of %d expected versions show a session state other than that session's final one (what a projection of the newest version would get wrong)",
		n.staleSessions, want)
	if len(problems) > 0 {
		for _, p := range problems[:min(len(problems), 5)] {
			t.Error(p)
		}
		t.Fatalf("seed %d: %d invariant violations (first ones above; versions whose payload differs, by the path of the first difference: %v); replay with WALHOOK_SEED=%d",
			seed, len(problems), n.diffPaths, seed)
	}
}

// quiescentSnapshots reads topic (read_committed) from its start until the pipeline is quiescent:
// the slot's confirmed_flush_lsn has reached target and no snapshot arrived for a while (2s once
// want were read, 15s otherwise, so that a missing snapshot is reported by the validators rather
// than as a timeout). It fails the test when that takes longer than timeout.
func (e *e2e) quiescentSnapshots(topic, target string, want int, timeout time.Duration) []avro.Snapshot {
	e.t.Helper()
	cl := kafkatest.Client(e.t, e.env, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	var snaps []avro.Snapshot
	deadline := time.Now().Add(timeout)
	grew := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				e.t.Fatalf("fetch %s[%d]: %v", topic, p, err)
			}
		})
		for _, r := range fs.Records() {
			snaps = append(snaps, e.decodeSnapshot(r))
			grew = time.Now()
		}
		var confirmed string
		var reached bool
		err := e.db.QueryRow(context.Background(), `SELECT confirmed_flush_lsn::text, confirmed_flush_lsn >= $1::pg_lsn
			FROM pg_replication_slots WHERE slot_name = $2`, target, e.cfg.Postgres.Slot).Scan(&confirmed, &reached)
		if err != nil {
			e.t.Fatalf("confirmed_flush_lsn: %v", err)
		}
		quiet := time.Since(grew)
		if reached && (len(snaps) >= want && quiet > 2*time.Second || quiet > 15*time.Second) {
			return snaps
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("not quiescent within %v: %d of %d snapshots, confirmed_flush_lsn %s, target %s", timeout, len(snaps), want, confirmed, target)
		}
	}
}

func (e *e2e) decodeSnapshot(r *kgo.Record) avro.Snapshot {
	e.t.Helper()
	_, body, err := e.reg.Resolve(context.Background(), r.Value)
	if err != nil {
		e.t.Fatalf("resolve snapshot %s[%d]@%d: %v", r.Topic, r.Partition, r.Offset, err)
	}
	s, err := avro.DecodeSnapshot(body)
	if err != nil {
		e.t.Fatalf("decode snapshot %s[%d]@%d: %v", r.Topic, r.Partition, r.Offset, err)
	}
	if string(r.Key) != s.Key {
		e.t.Fatalf("snapshot %s[%d]@%d: key %q but record key %q", r.Topic, r.Partition, r.Offset, s.Key, r.Key)
	}
	return s
}

// The reference objects, built by PostgreSQL in the contract's shape: root columns without
// tenant_id and is_deleted, the session projection, the timeline ordered by id without
// soft-deleted rows ([] when empty), timestamps UTC ISO 8601 with milliseconds and Z.
const isoMillis = `'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'`

var sessionObjectSQL = strings.ReplaceAll(`json_build_object('id', s.id, 'uuid', s.uuid, 'score', s.score, 'status', s.status,
	'created_at', to_char(s.created_at AT TIME ZONE 'UTC', ISO), 'updated_at', to_char(s.updated_at AT TIME ZONE 'UTC', ISO))`, "ISO", isoMillis)

var incidentObjectsSQL = strings.ReplaceAll(`SELECT i.id, i.tenant_id, json_build_object(
	'id', i.id, 'name', i.name, 'description', i.description, 'status', i.status, 'severity', i.severity,
	'start_time', to_char(i.start_time AT TIME ZONE 'UTC', ISO), 'end_time', to_char(i.end_time AT TIME ZONE 'UTC', ISO),
	'resolution_notes', i.resolution_notes, 'session_instance_id', i.session_instance_id, 'external_id', i.external_id,
	'created_at', to_char(i.created_at AT TIME ZONE 'UTC', ISO), 'created_by', i.created_by,
	'updated_at', to_char(i.updated_at AT TIME ZONE 'UTC', ISO), 'updated_by', i.updated_by,
	'session', (SELECT `+sessionObjectSQL+` FROM session.instance s WHERE s.id = i.session_instance_id),
	'timeline', COALESCE((SELECT json_agg(json_build_object('id', tl.id, 'action', tl.action, 'description', tl.description,
			'created_at', to_char(tl.created_at AT TIME ZONE 'UTC', ISO), 'created_by', tl.created_by,
			'updated_at', to_char(tl.updated_at AT TIME ZONE 'UTC', ISO), 'updated_by', tl.updated_by) ORDER BY tl.id)
		FROM incident.timeline tl WHERE tl.incident_instance_id = i.id AND NOT tl.is_deleted), '[]'::json)
)::text FROM incident.instance i`, "ISO", isoMillis)

// dbObject is one incident as the database builds it.
type dbObject struct {
	tenant string
	obj    map[string]any
}

func queryObjects(t *testing.T, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, sql string, args ...any) map[int]dbObject {
	t.Helper()
	rows, err := q.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("reference query: %v", err)
	}
	out := map[int]dbObject{}
	for rows.Next() {
		var id int
		var o dbObject
		var text string
		if err := rows.Scan(&id, &o.tenant, &text); err != nil {
			t.Fatalf("reference query: %v", err)
		}
		if err := json.Unmarshal([]byte(text), &o.obj); err != nil {
			t.Fatalf("reference object of %d: %v\n%s", id, err, text)
		}
		out[id] = o
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("reference query: %v", err)
	}
	return out
}

// nemesis writes random transactions on one connection, one at a time, and records what every
// root must receive.
type nemesis struct {
	t           *testing.T
	db          *pgx.Conn
	bulkDB      *pgx.Conn // a second connection for the bulk transactions
	rng         *rand.Rand
	seq         int // number of the transaction being written, from 0
	sessions    []*nemSession
	incidents   map[int]*nemIncident
	active      []*nemIncident // neither soft- nor hard-deleted
	softDeleted []*nemIncident // soft-deleted and still in the table

	ops map[string]int // operations written, by kind, for the log

	staleSessions int                       // expected versions whose session is not that session's final state
	diffPaths     map[string]int            // versions whose payload differs, by the path of the first difference
	tx            pgx.Tx                    // the open transaction
	inBulk        bool                      // a bulk transaction is open on bulkDB (bulkTxn)
	marks         map[*nemIncident]*nemMark // roots it touched
}

type nemSession struct {
	id     int
	tenant string
	refs   int // incidents still in the table that point at it
}

type nemIncident struct {
	id       int
	tenant   string
	session  *nemSession
	timeline []*nemTimeline // rows still in the table
	txns     []rootTxn      // the source transactions that touched it, in commit order
}

type nemTimeline struct {
	id          int
	softDeleted bool
}

// rootTxn is what one source transaction must give a root: its verb and, unless hard-deleted, the
// object the database built just before the commit.
type rootTxn struct {
	seq  int
	verb avro.Verb
	obj  map[string]any
	gone bool // the transaction hard-deleted the root
}

type nemMark struct {
	created, deleted, gone bool
	goneObj                map[string]any // a hard-deleted root's object just before its DELETE
}

var (
	nemTenants    = []string{"acme", "globex", "initech"}
	nemStatuses   = []string{"TRIGGERED", "RESOLVED", "DISMISSED", "REOPENED"}
	nemSeverities = []string{"LOW", "MEDIUM", "HIGH"}
	nemActions    = []string{"DETECTED", "ESCALATED", "RESOLVED", "DISMISSED", "REOPENED", "COMMENTED"}
	nemSessStatus = []string{"SCHEDULED", "IN_PROGRESS", "COMPLETED", "CANCELLED"}
	// Texts that exercise JSON escaping; nil is SQL NULL.
	nemTexts = []any{nil, "", "Face not detected", `He said "look away"`, `C:\exam\cam`, "line one\nline two\ttab",
		"ünïcødé – ✓ 中文", "🚨 multiple faces", "<b>&amp;</b>", "Confirmed candidate was adjusting camera. No violation."}
)

func newNemesis(t *testing.T, db, bulkDB *pgx.Conn, seed uint64) *nemesis {
	return &nemesis{t: t, db: db, bulkDB: bulkDB, rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)), incidents: map[int]*nemIncident{}, ops: map[string]int{}, diffPaths: map[string]int{}}
}

func (n *nemesis) pick(xs []string) string { return xs[n.rng.IntN(len(xs))] }
func (n *nemesis) text() any               { return nemTexts[n.rng.IntN(len(nemTexts))] }

// instant is a time in February 2026 with microseconds, so that formatting must truncate to
// milliseconds.
func (n *nemesis) instant() time.Time {
	return time.Date(2026, 2, 3, 0, 0, 0, 0, time.UTC).Add(time.Duration(n.rng.Int64N(10*24*3600*1e6)) * time.Microsecond)
}

func (n *nemesis) exec(sql string, args ...any) int64 {
	n.t.Helper()
	tag, err := n.tx.Exec(context.Background(), sql, args...)
	if err != nil {
		n.t.Fatalf("txn %d: %.80q: %v", n.seq, sql, err)
	}
	return tag.RowsAffected()
}

func (n *nemesis) queryRow(sql string, args []any, dest ...any) {
	n.t.Helper()
	if err := n.tx.QueryRow(context.Background(), sql, args...).Scan(dest...); err != nil {
		n.t.Fatalf("txn %d: %.80q: %v", n.seq, sql, err)
	}
}

// txn writes one transaction of 1–4 operations, then records, for every root it touched, the verb
// and the object the database builds before the commit.
func (n *nemesis) txn() {
	n.t.Helper()
	ctx := context.Background()
	tx, err := n.db.Begin(ctx)
	if err != nil {
		n.t.Fatalf("begin: %v", err)
	}
	n.tx, n.marks = tx, map[*nemIncident]*nemMark{}
	for range 1 + n.rng.IntN(4) {
		n.op()
	}
	// Just before COMMIT: the object of every root the transaction touched, the session joined
	// as it stands in this transaction.
	var ids []int
	for inc, m := range n.marks {
		if !m.gone {
			ids = append(ids, inc.id)
		}
	}
	objs := map[int]dbObject{}
	if len(ids) > 0 {
		objs = queryObjects(n.t, tx, incidentObjectsSQL+` WHERE i.id = ANY($1)`, ids)
	}
	for inc, m := range n.marks {
		if m.gone {
			m.goneObj["session"] = n.sessionObject(inc.session.id)
			objs[inc.id] = dbObject{tenant: inc.tenant, obj: m.goneObj}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		n.t.Fatalf("txn %d: commit: %v", n.seq, err)
	}
	for inc, m := range n.marks {
		rt := rootTxn{seq: n.seq, verb: avro.VerbUpdated, obj: objs[inc.id].obj, gone: m.gone}
		switch {
		case m.created:
			rt.verb = avro.VerbCreated
		case m.deleted || m.gone:
			rt.verb = avro.VerbDeleted
		}
		inc.txns = append(inc.txns, rt)
	}
	n.seq++
}

// bulkTxn inserts 200 long timeline rows into one incident on the second connection (with the
// touch trigger, past 64kB of WAL, so PostgreSQL streams it), keeps that transaction open while
// 1–5 ordinary transactions on other roots commit, then commits it: a streamed transaction whose
// changes interleave with others' in the WAL. The incident is out of the nemesis's reach meanwhile,
// since its row is locked.
func (n *nemesis) bulkTxn() {
	n.t.Helper()
	if len(n.active) == 0 {
		n.txn()
		return
	}
	ctx := context.Background()
	inc := n.active[n.rng.IntN(len(n.active))]
	tx, err := n.bulkDB.Begin(ctx)
	if err != nil {
		n.t.Fatalf("begin bulk: %v", err)
	}
	rows, err := tx.Query(ctx, `INSERT INTO incident.timeline (incident_instance_id, action, description, created_by, updated_by, tenant_id)
		SELECT $1, 'COMMENTED', $2 || ' ' || repeat('x', 200) || ' ' || g, 7, 7, $3 FROM generate_series(1, 200) g RETURNING id`,
		inc.id, fmt.Sprint(n.text()), inc.tenant)
	if err != nil {
		n.t.Fatalf("bulk insert into incident %d: %v", inc.id, err)
	}
	var added []*nemTimeline
	for rows.Next() {
		tl := &nemTimeline{}
		if err := rows.Scan(&tl.id); err != nil {
			n.t.Fatalf("bulk insert into incident %d: %v", inc.id, err)
		}
		added = append(added, tl)
	}
	if err := rows.Err(); err != nil {
		n.t.Fatalf("bulk insert into incident %d: %v", inc.id, err)
	}
	n.ops["timeline bulk insert"]++

	n.active = remove(n.active, inc)
	n.inBulk = true
	for range 1 + n.rng.IntN(5) {
		n.txn()
	}
	n.inBulk = false
	n.active = append(n.active, inc)

	objs := queryObjects(n.t, tx, incidentObjectsSQL+` WHERE i.id = $1`, inc.id)
	if err := tx.Commit(ctx); err != nil {
		n.t.Fatalf("bulk txn %d: commit: %v", n.seq, err)
	}
	inc.timeline = append(inc.timeline, added...)
	inc.txns = append(inc.txns, rootTxn{seq: n.seq, verb: avro.VerbUpdated, obj: objs[inc.id].obj})
	n.seq++
}

func (n *nemesis) mark(inc *nemIncident) *nemMark {
	m := n.marks[inc]
	if m == nil {
		m = &nemMark{}
		n.marks[inc] = m
	}
	return m
}

// op runs one random operation of the current transaction.
func (n *nemesis) op() {
	if !n.inBulk && n.rng.IntN(400) == 0 {
		n.truncateTimeline()
		return
	}
	if !n.inBulk && n.rng.IntN(3000) == 0 {
		n.truncateIncidents()
		return
	}
	r := n.rng.IntN(100)
	if r < 10 || len(n.active) == 0 {
		n.createIncident()
		return
	}
	inc := n.active[n.rng.IntN(len(n.active))]
	switch {
	case r < 14:
		n.createSession(n.pick(nemTenants))
	case r < 22 && len(n.sessions) > 0:
		n.updateSession(n.sessions[n.rng.IntN(len(n.sessions))])
	case r < 25 && len(n.sessions) > 0:
		n.deleteSession(n.sessions[n.rng.IntN(len(n.sessions))])
	case r < 29:
		n.repointIncident(inc)
	case r < 40:
		n.updateIncident(inc)
		if n.rng.IntN(4) == 0 && !inc.session.deleted() {
			n.updateSession(inc.session)
		}
	case r < 58:
		n.insertTimeline(inc)
	case r < 85 && len(inc.timeline) == 0:
		n.insertTimeline(inc)
	case r < 70:
		n.updateTimeline(inc, inc.timeline[n.rng.IntN(len(inc.timeline))])
	case r < 77:
		n.softDeleteTimeline(inc, inc.timeline[n.rng.IntN(len(inc.timeline))])
	case r < 85:
		n.hardDeleteTimeline(inc, n.rng.IntN(len(inc.timeline)))
	case r < 89:
		n.softDeleteIncident(inc)
	case r < 93:
		if len(n.softDeleted) > 0 && n.rng.IntN(2) == 0 {
			inc = n.softDeleted[n.rng.IntN(len(n.softDeleted))]
		}
		n.hardDeleteIncident(inc)
	default:
		n.updateIncident(inc)
	}
}

func (n *nemesis) createSession(tenant string) *nemSession {
	n.ops["session insert"]++
	s := &nemSession{tenant: tenant}
	var score any
	if n.rng.IntN(4) > 0 {
		score = n.rng.IntN(101)
	}
	n.queryRow(`INSERT INTO session.instance (score, status, tenant_id) VALUES ($1, $2, $3) RETURNING id`,
		[]any{score, n.pick(nemSessStatus), tenant}, &s.id)
	n.sessions = append(n.sessions, s)
	return s
}

func (n *nemesis) updateSession(s *nemSession) {
	n.ops["session update"]++
	var score any
	if n.rng.IntN(4) > 0 {
		score = n.rng.IntN(101)
	}
	n.exec(`UPDATE session.instance SET status = $2, score = $3, updated_at = now() WHERE id = $1`, s.id, n.pick(nemSessStatus), score)
}

// deleteSession hard-deletes a session, whether incidents point at it or not (they show session
// null from this transaction on).
func (n *nemesis) deleteSession(s *nemSession) {
	n.exec(`DELETE FROM session.instance WHERE id = $1`, s.id)
	n.ops["session delete"]++
	n.sessions = slices.DeleteFunc(n.sessions, func(x *nemSession) bool { return x == s })
	s.id = -s.id // remembered as deleted; incidents keep pointing at the old id
}

func (s *nemSession) deleted() bool { return s.id < 0 }

// sessionID is the id an incident's session_instance_id holds.
func (s *nemSession) sessionID() int { return max(s.id, -s.id) }

// repointIncident points the incident at another live session of its tenant, when there is one,
// and sometimes changes that session in the same transaction.
func (n *nemesis) repointIncident(inc *nemIncident) {
	var others []*nemSession
	for _, s := range n.sessions {
		if s.tenant == inc.tenant && s != inc.session {
			others = append(others, s)
		}
	}
	if len(others) == 0 {
		n.updateIncident(inc)
		return
	}
	s := others[n.rng.IntN(len(others))]
	n.ops["incident repoint"]++
	n.exec(`UPDATE incident.instance SET session_instance_id = $2, updated_at = now() WHERE id = $1`, inc.id, s.id)
	inc.session.refs--
	s.refs++
	inc.session = s
	n.mark(inc)
	if n.rng.IntN(3) == 0 {
		n.updateSession(s)
	}
}

// sessionObject is the session's projected object as the open transaction sees it; nil when the
// row does not exist.
func (n *nemesis) sessionObject(id int) any {
	n.t.Helper()
	var text *string
	n.queryRow(`SELECT (SELECT `+sessionObjectSQL+`::text FROM session.instance s WHERE s.id = $1)`, []any{max(id, -id)}, &text)
	if text == nil {
		return nil
	}
	return n.parse(*text)
}

func (n *nemesis) createIncident() {
	n.ops["incident insert"]++
	var s *nemSession
	if len(n.sessions) == 0 || n.rng.IntN(3) == 0 {
		s = n.createSession(n.pick(nemTenants)) // the incident and its session in one transaction
	} else {
		s = n.sessions[n.rng.IntN(len(n.sessions))]
	}
	inc := &nemIncident{tenant: s.tenant, session: s}
	var end any
	if n.rng.IntN(3) == 0 {
		end = n.instant()
	}
	n.queryRow(`INSERT INTO incident.instance (name, description, status, severity, start_time, end_time, resolution_notes,
			session_instance_id, external_id, created_by, updated_by, tenant_id)
		VALUES ($1, $2, 'TRIGGERED', $3, $4, $5, $6, $7, $8, $9, $9, $10) RETURNING id`,
		[]any{n.text(), n.text(), n.pick(nemSeverities), n.instant(), end, n.text(), s.id, n.text(), n.rng.IntN(5), s.tenant}, &inc.id)
	s.refs++
	n.incidents[inc.id] = inc
	n.active = append(n.active, inc)
	n.mark(inc).created = true
}

func (n *nemesis) updateIncident(inc *nemIncident) {
	n.ops["incident update"]++
	var end any
	if n.rng.IntN(2) == 0 {
		end = n.instant()
	}
	// The platform usually touches updated_at itself; sometimes it writes an explicit time.
	updated := any("now")
	if n.rng.IntN(3) == 0 {
		updated = n.instant()
	}
	n.exec(`UPDATE incident.instance SET status = $2, severity = $3, resolution_notes = $4, end_time = $5,
		updated_at = $6, updated_by = $7 WHERE id = $1`,
		inc.id, n.pick(nemStatuses), n.pick(nemSeverities), n.text(), end, updated, n.rng.IntN(5))
	n.mark(inc)
}

func (n *nemesis) insertTimeline(inc *nemIncident) {
	n.ops["timeline insert"]++
	tl := &nemTimeline{}
	created := any("now")
	if n.rng.IntN(2) == 0 {
		created = n.instant()
	}
	n.queryRow(`INSERT INTO incident.timeline (incident_instance_id, action, description, created_at, created_by, updated_at, updated_by, tenant_id)
		VALUES ($1, $2, $3, $4, $5, $4, $5, $6) RETURNING id`,
		[]any{inc.id, n.pick(nemActions), n.text(), created, n.rng.IntN(5), inc.tenant}, &tl.id)
	inc.timeline = append(inc.timeline, tl)
	n.mark(inc)
}

func (n *nemesis) updateTimeline(inc *nemIncident, tl *nemTimeline) {
	n.ops["timeline update"]++
	n.exec(`UPDATE incident.timeline SET action = $2, description = $3, updated_at = now(), updated_by = $4 WHERE id = $1`,
		tl.id, n.pick(nemActions), n.text(), n.rng.IntN(5))
	n.mark(inc)
}

func (n *nemesis) softDeleteTimeline(inc *nemIncident, tl *nemTimeline) {
	n.ops["timeline soft delete"]++
	n.exec(`UPDATE incident.timeline SET is_deleted = true, updated_at = now() WHERE id = $1`, tl.id)
	tl.softDeleted = true
	n.mark(inc)
}

func (n *nemesis) hardDeleteTimeline(inc *nemIncident, i int) {
	n.ops["timeline hard delete"]++
	n.exec(`DELETE FROM incident.timeline WHERE id = $1`, inc.timeline[i].id)
	inc.timeline = append(inc.timeline[:i], inc.timeline[i+1:]...)
	n.mark(inc)
}

// softDeleteIncident sets is_deleted; an incident inserted by this transaction is left alone.
func (n *nemesis) softDeleteIncident(inc *nemIncident) {
	m := n.mark(inc)
	if m.created {
		return
	}
	n.exec(`UPDATE incident.instance SET is_deleted = true, updated_at = now() WHERE id = $1`, inc.id)
	n.ops["incident soft delete"]++
	m.deleted = true
	n.active = remove(n.active, inc)
	n.softDeleted = append(n.softDeleted, inc)
}

// hardDeleteIncident deletes the incident's timeline rows (the foreign key), then the incident.
func (n *nemesis) hardDeleteIncident(inc *nemIncident) {
	m := n.mark(inc)
	if m.created {
		return
	}
	if got := n.exec(`DELETE FROM incident.timeline WHERE incident_instance_id = $1`, inc.id); got != int64(len(inc.timeline)) {
		n.t.Fatalf("txn %d: deleted %d timeline rows of incident %d, the writer knows %d", n.seq, got, inc.id, len(inc.timeline))
	}
	// The deleted version shows the last object: the row as it is now (the timeline gone).
	m.goneObj = queryObjects(n.t, n.tx, incidentObjectsSQL+` WHERE i.id = $1`, inc.id)[inc.id].obj
	n.exec(`DELETE FROM incident.instance WHERE id = $1`, inc.id)
	n.ops["incident hard delete"]++
	inc.timeline = nil
	inc.session.refs--
	m.gone = true
	n.active = remove(n.active, inc)
	n.softDeleted = remove(n.softDeleted, inc)
}

// truncateTimeline empties the timeline table: every incident with timeline rows (soft-deleted
// ones count) gets a version of this transaction. Never while a bulk transaction is open: its
// rows lock the table against TRUNCATE on the connection the nemesis waits on.
func (n *nemesis) truncateTimeline() {
	n.exec(`TRUNCATE incident.timeline`)
	n.ops["timeline truncate"]++
	for _, inc := range n.incidents {
		if len(inc.timeline) > 0 {
			inc.timeline = nil
			n.mark(inc)
		}
	}
}

// truncateIncidents empties the incident table and, by CASCADE, the timeline: every incident
// still in the table gets a deleted version showing its last row with an empty timeline (one
// inserted by this same transaction too).
func (n *nemesis) truncateIncidents() {
	var ids []int
	for _, inc := range slices.Concat(n.active, n.softDeleted) {
		ids = append(ids, inc.id)
	}
	before := queryObjects(n.t, n.tx, incidentObjectsSQL+` WHERE i.id = ANY($1)`, ids)
	n.exec(`TRUNCATE incident.instance CASCADE`)
	n.ops["incident truncate"]++
	for _, inc := range slices.Concat(n.active, n.softDeleted) {
		m := n.mark(inc)
		m.goneObj = before[inc.id].obj
		m.goneObj["timeline"] = []any{}
		m.created, m.deleted, m.gone = false, false, true
		inc.timeline = nil
		inc.session.refs--
	}
	n.active, n.softDeleted = nil, nil
}

func remove(xs []*nemIncident, x *nemIncident) []*nemIncident {
	for i := range xs {
		if xs[i] == x {
			return append(xs[:i], xs[i+1:]...)
		}
	}
	return xs
}

func (n *nemesis) parse(text string) any {
	n.t.Helper()
	var v any
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		n.t.Fatalf("txn %d: %v\n%s", n.seq, err, text)
	}
	return v
}

func (n *nemesis) expectedSnapshots() int {
	total := 0
	for _, inc := range n.incidents {
		total += len(inc.txns)
	}
	return total
}

// finalSessions is every session's projected object in the final database.
func (n *nemesis) finalSessions() map[int]any {
	n.t.Helper()
	rows, err := n.db.Query(context.Background(), `SELECT s.id, `+sessionObjectSQL+`::text FROM session.instance s`)
	if err != nil {
		n.t.Fatalf("final sessions: %v", err)
	}
	defer rows.Close()
	out := map[int]any{}
	for rows.Next() {
		var id int
		var text string
		if err := rows.Scan(&id, &text); err != nil {
			n.t.Fatalf("final sessions: %v", err)
		}
		out[id] = n.parse(text)
	}
	if err := rows.Err(); err != nil {
		n.t.Fatalf("final sessions: %v", err)
	}
	return out
}

// finalObjects is the one reference query over the final database.
func (n *nemesis) finalObjects() map[int]dbObject {
	return queryObjects(n.t, n.db, incidentObjectsSQL)
}

// validate checks every invariant and returns the violations, the first root's first.
func (n *nemesis) validate(snaps []avro.Snapshot, final map[int]dbObject) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	finalSessions := n.finalSessions()

	byKey := map[string][]avro.Snapshot{}
	for _, s := range snaps {
		byKey[s.Key] = append(byKey[s.Key], s)
	}
	for key := range byKey {
		if id, err := strconv.Atoi(key); err != nil || n.incidents[id] == nil {
			bad("snapshots for root %q, which the writer never created", key)
		}
	}
	ids := make([]int, 0, len(n.incidents))
	for id := range n.incidents {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	if len(final) > len(n.incidents) {
		bad("the database holds %d incidents, the writer created %d", len(final), len(n.incidents))
	}

	lsnOf := map[int]uint64{} // writer transaction → commit LSN, from the snapshots
	lsnRoot := map[int]int{}
	for _, id := range ids {
		inc := n.incidents[id]
		got := byKey[strconv.Itoa(id)]
		if len(got) != len(inc.txns) {
			bad("root %d: %d snapshots, want one per source transaction that touched it: %d (%s); got %s",
				id, len(got), len(inc.txns), describeWant(inc.txns), describeGot(got))
		}
		var prevLSN uint64
		for i, s := range got {
			if s.Version != int64(i+1) {
				bad("root %d: snapshot #%d in offset order has version %d (got %s)", id, i+1, s.Version, describeGot(got))
				break
			}
			if i >= len(inc.txns) {
				break
			}
			want := inc.txns[i]
			where := fmt.Sprintf("root %d v%d (writer txn %d, LSN %s)", id, s.Version, want.seq, lsnString(s.CommitLSN))
			if s.Verb != want.verb {
				bad("%s: verb %s, want %s (history %s)", where, s.Verb, want.verb, describeWant(inc.txns))
			}
			if et := "incident_instance_" + want.verb.String(); s.EventType != et || s.RootType != "incident.instance" || s.EventPrefix != "incident.instance" {
				bad("%s: root type %q, prefix %q, event type %q, want incident.instance and %s", where, s.RootType, s.EventPrefix, s.EventType, et)
			}
			if s.Tenant != inc.tenant {
				bad("%s: tenant %q, the row's tenant_id is %q", where, s.Tenant, inc.tenant)
			}
			if s.CommitLSN <= prevLSN {
				bad("%s: commit LSN not above the previous version's %s", where, lsnString(prevLSN))
			}
			prevLSN = s.CommitLSN
			if l, ok := lsnOf[want.seq]; ok && l != s.CommitLSN {
				bad("%s: root %d got LSN %s for the same source transaction", where, lsnRoot[want.seq], lsnString(l))
			}
			lsnOf[want.seq], lsnRoot[want.seq] = s.CommitLSN, id

			var payload map[string]any
			if err := json.Unmarshal(s.Payload, &payload); err != nil {
				bad("%s: payload is not a JSON object: %v\n%s", where, err, s.Payload)
				continue
			}
			if sid, ok := want.obj["session_instance_id"].(float64); ok && !reflect.DeepEqual(want.obj["session"], finalSessions[int(sid)]) {
				n.staleSessions++
			}
			if d := describeDiff(want.obj, payload); d != "" {
				bad("%s: payload differs from the object the database built in the source transaction %s", where, d)
				p, _, _ := diffAt("$", want.obj, payload)
				n.diffPaths[arrayIndex.ReplaceAllString(p, "[]")]++
			}
		}

		// The last snapshot against the one query over the final database.
		row, inTable := final[id]
		gone := len(inc.txns) > 0 && inc.txns[len(inc.txns)-1].gone
		switch {
		case gone && inTable:
			bad("root %d: hard-deleted by the writer but still in the table", id)
		case !gone && !inTable:
			bad("root %d: missing from the table", id)
		case inTable && len(got) > 0:
			last := got[len(got)-1]
			if row.tenant != last.Tenant {
				bad("root %d: last snapshot tenant %q, tenant_id %q", id, last.Tenant, row.tenant)
			}
			var payload map[string]any
			if json.Unmarshal(last.Payload, &payload) != nil {
				break // reported above
			}
			// The session is checked per version above; now it may stand later than the root's
			// last transaction.
			want := withoutSession(row.obj)
			payload = withoutSession(payload)
			if d := describeDiff(want, payload); d != "" {
				bad("root %d v%d: last snapshot differs from the reference query over the final database %s", id, last.Version, d)
			}
		}
	}

	seqs := make([]int, 0, len(lsnOf))
	for seq := range lsnOf {
		seqs = append(seqs, seq)
	}
	sort.Ints(seqs)
	for i := 1; i < len(seqs); i++ {
		if a, b := lsnOf[seqs[i-1]], lsnOf[seqs[i]]; b <= a {
			bad("writer txn %d (root %d) has commit LSN %s, not above txn %d's (root %d) %s",
				seqs[i], lsnRoot[seqs[i]], lsnString(b), seqs[i-1], lsnRoot[seqs[i-1]], lsnString(a))
		}
	}
	return problems
}

func withoutSession(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k != "session" {
			out[k] = v
		}
	}
	return out
}

// diffAt is the JSON path of the first difference between want and got ("" for none) and the
// two values found there.
func diffAt(path string, want, got any) (string, any, any) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return path, want, got
		}
		all := map[string]any{}
		for k := range w {
			all[k] = nil
		}
		for k := range g {
			all[k] = nil
		}
		for _, k := range keys(all) {
			wv, wok := w[k]
			gv, gok := g[k]
			if wok != gok {
				return path + "." + k, wv, gv
			}
			if p, a, b := diffAt(path+"."+k, wv, gv); p != "" {
				return p, a, b
			}
		}
		return "", nil, nil
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return path, want, got
		}
		for i := range w {
			if p, a, b := diffAt(fmt.Sprintf("%s[%d]", path, i), w[i], g[i]); p != "" {
				return p, a, b
			}
		}
		return "", nil, nil
	default:
		if !reflect.DeepEqual(want, got) {
			return path, want, got
		}
		return "", nil, nil
	}
}

// describeDiff says where and how got differs from want, with both documents clipped.
func describeDiff(want, got any) string {
	p, a, b := diffAt("$", want, got)
	if p == "" {
		return ""
	}
	return fmt.Sprintf("at %s: want %s, got %s\n  want %s\n  got  %s", p, clip(compactJSON(a)), clip(compactJSON(b)), clip(compactJSON(want)), clip(compactJSON(got)))
}

var arrayIndex = regexp.MustCompile(`\[\d+\]`)

// clip shortens s to about 600 bytes for a failure message.
func clip(s string) string {
	if len(s) <= 600 {
		return s
	}
	return s[:600] + fmt.Sprintf("… (%d bytes)", len(s))
}

// compactJSON is v as one line of JSON, with <, > and & left as they are.
func compactJSON(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func describeWant(txns []rootTxn) string {
	parts := make([]string, len(txns))
	for i, rt := range txns {
		parts[i] = fmt.Sprintf("txn %d %s", rt.seq, rt.verb)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func describeGot(snaps []avro.Snapshot) string {
	parts := make([]string, len(snaps))
	for i, s := range snaps {
		parts[i] = fmt.Sprintf("v%d %s @%s", s.Version, s.Verb, lsnString(s.CommitLSN))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func lsnString(lsn uint64) string { return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn)) }
