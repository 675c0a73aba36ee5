//go:build linux

package cdc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/kafkatest"
)

// TestKillNineLosesNothing runs the stage as a child process under a steady write load and
// kills it with SIGKILL at random (seeded) moments, restarting it each time. At the end every
// committed row is in Kafka (the change records folded by table and primary key equal a fresh
// SELECT), no record is repeated within one process's life, and every record a restarted
// process wrote again has a commit LSN at or above the slot's confirmed_flush_lsn as
// pg_replication_slots showed it after the kill: only the unconfirmed tail is repeated.
//
// The short run (3 kills, about 20 s) is part of `make test`; WALHOOK_CHAOS=1 (`make chaos`)
// makes it 15 kills. WALHOOK_KILL_SEED replays a seed.
func TestKillNineLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("kills processes for ~20 s; skipped with -short")
	}
	kills, maxUp := 3, 4*time.Second
	if os.Getenv("WALHOOK_CHAOS") != "" {
		kills, maxUp = 15, 6*time.Second
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("WALHOOK_KILL_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (WALHOOK_KILL_SEED=%d replays it), %d kills", seed, seed, kills)
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))

	e := newEnv(t, "")
	slot := e.cfg.Postgres.Slot
	if !e.kafk.Real() {
		// Acknowledge produce requests 20-80 ms late, as a real broker might: records spend
		// long enough in flight for a kill to catch some, which a stage confirming on receipt
		// (rather than on acknowledgement) would then lose.
		cluster := e.kafk.RequireCluster(t)
		cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
			cluster.KeepControl()
			d := time.Duration(20+rand.IntN(60)) * time.Millisecond
			cluster.SleepControl(func() { time.Sleep(d) })
			return nil, nil, false
		})
	}
	// The first process creates the slot on empty tables (its initial snapshot has nothing
	// to read); the seed rows and the load then arrive as streamed changes.
	c := e.startChild("run0")
	c.waitReady(2 * time.Minute)
	e.exec(`INSERT INTO session.instance (id, status, score, tenant_id) SELECT g, 'IN_PROGRESS', 0, 't1' FROM generate_series(1, 5) g;
		INSERT INTO incident.instance (id, status, severity, start_time, session_instance_id, tenant_id)
		SELECT g, 'TRIGGERED', 'LOW', now(), 1 + g % 5, 't1' FROM generate_series(1, 20) g`)

	w := startLoad(t, e.url, rng.Uint64())
	runs := []runWindow{{start: c.started}}
	for k := 0; k < kills; k++ {
		up := time.Duration(300+rng.IntN(int(maxUp/time.Millisecond)-300)) * time.Millisecond
		time.Sleep(up)
		if done, err := c.exited(); done {
			t.Fatalf("run %d exited by itself (%v):\n%s", k, err, c.logTail())
		}
		pre := e.confirmedFlush()
		c.kill()
		killedAt := time.Now()
		post := e.waitInactive(slot)
		t.Logf("kill %d after %v: confirmed_flush_lsn %X before the kill, %X once the slot was released; %d transactions committed so far",
			k+1, up, pre, post, w.committed())
		runs[len(runs)-1].killed, runs[len(runs)-1].confirmed = killedAt, post
		c = e.startChild(fmt.Sprintf("run%d", k+1))
		runs = append(runs, runWindow{start: c.started})
	}
	time.Sleep(time.Second) // some load on the last process too
	if err := w.stop(); err != nil {
		t.Fatalf("writer: %v", err)
	}
	t.Logf("writer committed %d transactions", w.committed())

	rootTopic := e.cfg.Kafka.ChangeTopic(e.cfg.Model.Roots[0])
	refTopic := e.cfg.Kafka.ReferenceTopic("session.instance")
	want := e.dbState()
	cons := e.consume(rootTopic, refTopic)
	got := cons.until(3*time.Minute, func(rs []rec) error {
		if done, err := c.exited(); done {
			return fmt.Errorf("last run exited (%v):\n%s", err, c.logTail())
		}
		return diffState(want, foldChanges(rs))
	})
	if err := c.term(30 * time.Second); err != nil {
		t.Fatalf("%v\n%s", err, c.logTail())
	}
	checkRepeats(t, got, runs)
}

// runWindow is one child process's life: records it produced have timestamps in
// [start, killed); confirmed is the slot's confirmed_flush_lsn after it was killed.
type runWindow struct {
	start, killed time.Time
	confirmed     uint64
}

// waitInactive waits until the slot has no walsender (the killed process's connection is
// gone) and returns its confirmed_flush_lsn, the position the next process starts from.
func (e *env) waitInactive(slot string) uint64 {
	e.t.Helper()
	kafkatest.Eventually(e.t, 30*time.Second, func() error {
		var active bool
		if err := e.db.QueryRow(context.Background(), `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active); err != nil {
			return err
		}
		if active {
			return fmt.Errorf("slot %s still active", slot)
		}
		return nil
	})
	return e.confirmedFlush()
}

// loadWriter commits small transactions mixing roots, subordinates and references until stopped.
type loadWriter struct {
	mu    sync.Mutex
	n     int
	err   error
	quit  chan struct{}
	ended chan struct{}
}

func startLoad(t *testing.T, url string, seed uint64) *loadWriter {
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatalf("writer connect: %v", err)
	}
	w := &loadWriter{quit: make(chan struct{}), ended: make(chan struct{})}
	rng := rand.New(rand.NewPCG(seed, 1))
	go func() {
		defer close(w.ended)
		defer conn.Close(context.Background())
		for i := 0; ; i++ {
			select {
			case <-w.quit:
				return
			default:
			}
			if _, err := conn.Exec(context.Background(), loadTxn(rng, i)); err != nil {
				w.mu.Lock()
				w.err = fmt.Errorf("transaction %d: %w", i, err)
				w.mu.Unlock()
				return
			}
			w.mu.Lock()
			w.n++
			w.mu.Unlock()
			time.Sleep(time.Duration(rng.IntN(5)) * time.Millisecond)
		}
	}()
	return w
}

// loadTxn is one transaction of the load: timeline inserts (each touching its incident
// through the demo trigger), an incident update, and now and then a new incident, a timeline
// delete or a session update.
func loadTxn(rng *rand.Rand, i int) string {
	var b strings.Builder
	b.WriteString("BEGIN;\n")
	inc := 1 + rng.IntN(20)
	fmt.Fprintf(&b, `INSERT INTO incident.timeline (incident_instance_id, action, description, tenant_id)
		SELECT %d, 'COMMENTED', 'w%d-' || g, 't1' FROM generate_series(1, %d) g;`+"\n", inc, i, 1+rng.IntN(5))
	fmt.Fprintf(&b, `UPDATE incident.instance SET description = 'd%d', status = '%s' WHERE id = %d;`+"\n",
		i, []string{"TRIGGERED", "RESOLVED", "REOPENED"}[rng.IntN(3)], 1+rng.IntN(20))
	switch rng.IntN(6) {
	case 0:
		fmt.Fprintf(&b, `INSERT INTO incident.instance (status, severity, start_time, session_instance_id, tenant_id, description)
			VALUES ('TRIGGERED', 'HIGH', now(), %d, 't1', 'new%d');`+"\n", 1+rng.IntN(5), i)
	case 1:
		b.WriteString(`DELETE FROM incident.timeline WHERE id = (SELECT min(id) FROM incident.timeline);` + "\n")
	case 2:
		fmt.Fprintf(&b, `UPDATE session.instance SET score = %d WHERE id = %d;`+"\n", i, 1+rng.IntN(5))
	}
	b.WriteString("COMMIT;")
	return b.String()
}

func (w *loadWriter) committed() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

func (w *loadWriter) stop() error {
	close(w.quit)
	<-w.ended
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// rowState is a table's rows: primary key → the compared columns, as text.
type rowState map[string]map[string]string

// comparedColumns are the columns checked per table (the first is the primary key).
var comparedColumns = map[string][]string{
	"incident.instance": {"id", "status", "description"},
	"incident.timeline": {"id", "incident_instance_id", "description"},
	"session.instance":  {"id", "score", "status"},
}

// dbState reads the compared columns of every table.
func (e *env) dbState() rowState {
	e.t.Helper()
	out := rowState{}
	for table, cols := range comparedColumns {
		exprs := make([]string, len(cols))
		for i, c := range cols {
			exprs[i] = fmt.Sprintf("coalesce(%s::text, '<nil>')", c)
		}
		rows, err := e.db.Query(context.Background(), fmt.Sprintf("SELECT %s FROM %s", strings.Join(exprs, ", "), table))
		if err != nil {
			e.t.Fatalf("select %s: %v", table, err)
		}
		for rows.Next() {
			vals := make([]string, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				e.t.Fatalf("scan %s: %v", table, err)
			}
			out[table+"/"+vals[0]] = rowMap(cols, vals)
		}
		if err := rows.Err(); err != nil {
			e.t.Fatalf("select %s: %v", table, err)
		}
	}
	return out
}

func rowMap(cols, vals []string) map[string]string {
	m := make(map[string]string, len(cols))
	for i, c := range cols {
		m[c] = vals[i]
	}
	return m
}

// foldChanges applies the change records in commit order (commit LSN, index in the
// transaction): the newest change of each row wins, a delete removes it.
func foldChanges(rs []rec) rowState {
	type ver struct {
		lsn uint64
		idx int64
		row map[string]string // nil: deleted
	}
	last := map[string]ver{}
	for _, r := range rs {
		if r.kind != "change" {
			continue
		}
		cols := comparedColumns[r.change.Table]
		if cols == nil {
			continue
		}
		row := r.change.After
		if row == nil {
			row = r.change.Before
		}
		id := r.change.Table + "/" + textOf(row, cols[0])
		v := ver{lsn: r.change.CommitLSN, idx: r.change.Index}
		if r.change.Op != avro.OpDelete {
			vals := make([]string, len(cols))
			for i, c := range cols {
				vals[i] = textOf(r.change.After, c)
			}
			v.row = rowMap(cols, vals)
		}
		if old, ok := last[id]; ok && (old.lsn > v.lsn || old.lsn == v.lsn && old.idx > v.idx) {
			continue
		}
		last[id] = v
	}
	out := rowState{}
	for id, v := range last {
		if v.row != nil {
			out[id] = v.row
		}
	}
	return out
}

func textOf(r *avro.Row, col string) string {
	if r == nil {
		return "<no row>"
	}
	v, ok := r.Get(col)
	if !ok || v == nil {
		return "<nil>"
	}
	return fmt.Sprint(v)
}

// diffState describes how got differs from want (nil when equal).
func diffState(want, got rowState) error {
	var diffs []string
	for id, w := range want {
		g, ok := got[id]
		if !ok {
			diffs = append(diffs, id+" missing from Kafka")
			continue
		}
		if fmt.Sprint(w) != fmt.Sprint(g) {
			diffs = append(diffs, fmt.Sprintf("%s: Kafka %v, database %v", id, g, w))
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			diffs = append(diffs, id+" in Kafka but deleted in the database")
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	sort.Strings(diffs)
	return fmt.Errorf("%d rows differ, e.g. %s", len(diffs), strings.Join(diffs[:min(5, len(diffs))], "; "))
}

// checkRepeats fails on a record written twice by one process, and on a record written
// again by a restarted process whose commit LSN is below the confirmed_flush_lsn the slot
// had after the kill before it (the restart position): such a record was confirmed, and
// repeating it means the tail was not the only thing replayed.
func checkRepeats(t *testing.T, rs []rec, runs []runWindow) {
	t.Helper()
	runOf := func(ts time.Time) int {
		for i := len(runs) - 1; i > 0; i-- {
			if !ts.Before(runs[i].start.Truncate(time.Millisecond)) {
				return i
			}
		}
		return 0
	}
	type id struct {
		topic, kind, key string
		lsn              uint64
		idx              int64
	}
	seen := map[id][]int{}
	repeats, bad := 0, 0
	for _, r := range rs {
		var k id
		switch r.kind {
		case "change":
			if r.change.Op == avro.OpRead {
				continue // initial snapshot reads have their own resume rules
			}
			k = id{r.r.Topic, r.kind, string(r.r.Key), r.change.CommitLSN, r.change.Index}
		case "txn-end":
			k = id{r.r.Topic, r.kind, string(r.r.Key), r.end.CommitLSN, 0}
		default:
			continue
		}
		run := runOf(r.r.Timestamp)
		prev := seen[k]
		seen[k] = append(prev, run)
		if len(prev) == 0 {
			continue
		}
		repeats++
		for _, p := range prev {
			if p == run {
				bad++
				t.Errorf("%s %s key %s commit LSN %X index %d written twice by run %d", k.topic, k.kind, k.key, k.lsn, k.idx, run)
			}
		}
		if run == 0 {
			continue
		}
		if c := runs[run-1].confirmed; k.lsn < c {
			bad++
			t.Errorf("%s %s key %s commit LSN %X repeated by run %d, below the confirmed_flush_lsn %X the slot had after kill %d",
				k.topic, k.kind, k.key, k.lsn, run, c, run)
		}
		if bad > 20 {
			t.Fatal("too many bad repeats")
		}
	}
	t.Logf("%d records, %d repeats, all in the unconfirmed tail of a kill", len(rs), repeats)
}
