package cdc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/kafkatest"
)

// waitSnapshots waits until a stage this env started has finished every requested snapshot
// (its walhook_cdc_snapshot_remaining_tables gauge exists and is 0).
func (e *env) waitSnapshots() {
	e.t.Helper()
	kafkatest.Eventually(e.t, 120*time.Second, func() error {
		for _, r := range e.runs {
			if g, ok := r.stage.reg.(prometheus.Gatherer); ok && remainingTables(g) == 0 {
				return nil
			}
		}
		return errors.New("snapshot not finished")
	})
}

func remainingTables(g prometheus.Gatherer) float64 {
	if v, ok := gathered(g, "walhook_cdc_snapshot_remaining_tables"); ok {
		return v
	}
	return -1
}

// gathered is the value of the first gauge or counter named name whose labels include the
// given name/value pairs.
func gathered(g prometheus.Gatherer, name string, labelPairs ...string) (float64, bool) {
	mfs, _ := g.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.Metric {
			have := map[string]string{}
			for _, l := range m.Label {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labelPairs); i += 2 {
				if have[labelPairs[i]] != labelPairs[i+1] {
					continue next
				}
			}
			if m.Gauge != nil {
				return m.GetGauge().GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// snapProgressOf reads the recorded snapshot progress from the state topic.
func (e *env) snapProgressOf() map[string]*snapProgress {
	e.t.Helper()
	s, err := New(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := s.loadSnapshotProgress(ctx, kadm.NewClient(kafkatest.Client(e.t, e.kafk)))
	if err != nil {
		e.t.Fatalf("load progress: %v", err)
	}
	return p
}

// seed inserts sessions, incidents (round-robin over the sessions) and timeline rows.
func (e *env) seed(sessions, incidents, perIncident int) {
	e.t.Helper()
	e.exec(`INSERT INTO session.instance (id, status, score, tenant_id) SELECT g, 'COMPLETED', g, 't1' FROM generate_series(1, $1) g`, sessions)
	e.exec(`INSERT INTO incident.instance (id, name, status, severity, start_time, session_instance_id, tenant_id)
		SELECT g, 'incident ' || g, 'TRIGGERED', 'LOW', '2026-02-03T10:46:23Z', 1 + g % $2::int, 't1' FROM generate_series(1, $1) g`, incidents, sessions)
	e.exec(`INSERT INTO incident.timeline (id, incident_instance_id, action, tenant_id)
		SELECT g, 1 + (g - 1) / $2::int, 'DETECTED', 't1' FROM generate_series(1, $1::int * $2::int) g`, incidents, perIncident)
}

// snapTables are the demo tables and the columns compared between Kafka and the database.
var snapTables = map[string][]string{
	"incident.instance": {"name", "status", "severity", "session_instance_id"},
	"incident.timeline": {"incident_instance_id", "action", "description"},
	"session.instance":  {"status", "score"},
}

func (e *env) snapTopics() []string {
	return []string{e.cfg.Kafka.ChangeTopic(e.cfg.Model.Roots[0]), e.cfg.Kafka.ReferenceTopic("session.instance")}
}

func rowText(r *avro.Row, cols []string) string {
	s := ""
	for _, c := range cols {
		s += val(r, c) + "|"
	}
	return s
}

// fold applies the change records in partition order: reads and changes by primary key, and
// a truncate record of a table drops that table's rows whose records are on its partition.
func fold(rs []rec) map[string]map[string]string {
	out := map[string]map[string]string{}
	part := map[string]int32{} // table/id → the partition of its records
	for t := range snapTables {
		out[t] = map[string]string{}
	}
	for _, r := range rs {
		if r.kind == "truncate" {
			tbl := header(r.r, "walhook-table")
			for id := range out[tbl] {
				if part[tbl+"/"+id] == r.r.Partition {
					delete(out[tbl], id)
				}
			}
		}
		if r.kind != "change" {
			continue
		}
		c := r.change
		m := out[c.Table]
		if c.Op == avro.OpDelete {
			delete(m, val(c.Before, "id"))
			continue
		}
		m[val(c.After, "id")] = rowText(c.After, snapTables[c.Table])
		part[c.Table+"/"+val(c.After, "id")] = r.r.Partition
	}
	return out
}

func (e *env) dbRows() map[string]map[string]string {
	e.t.Helper()
	out := map[string]map[string]string{}
	for t, cols := range snapTables {
		out[t] = map[string]string{}
		sel := "id::text"
		for _, c := range cols {
			sel += fmt.Sprintf(", coalesce(%s::text, '<nil>')", ident(c))
		}
		rows, err := e.db.Query(context.Background(), "SELECT "+sel+" FROM "+table(t))
		if err != nil {
			e.t.Fatal(err)
		}
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				e.t.Fatal(err)
			}
			s := ""
			for _, v := range vals[1:] {
				s += v.(string) + "|"
			}
			out[t][vals[0].(string)] = s
		}
		if err := rows.Err(); err != nil {
			e.t.Fatal(err)
		}
	}
	return out
}

func sameRows(got, want map[string]map[string]string) error {
	for t, w := range want {
		g := got[t]
		for id, row := range w {
			if g[id] != row {
				return fmt.Errorf("%s id %s: kafka %q, database %q", t, id, g[id], row)
			}
		}
		for id := range g {
			if _, ok := w[id]; !ok {
				return fmt.Errorf("%s id %s: in kafka, not in the database", t, id)
			}
		}
	}
	return nil
}

// checkOrder checks that, per row, commit LSNs never go back in partition order, that no
// (row, LSN, op, index) appears twice and that no read contradicts the stream before it.
func checkOrder(t *testing.T, rs []rec) {
	t.Helper()
	last := map[string]uint64{}
	seen := map[string]bool{}
	state := map[string]string{} // rows the stream changed: their values (or "<deleted>")
	for _, r := range rs {
		if r.kind != "change" {
			continue
		}
		c := r.change
		img := c.After
		if c.Op == avro.OpDelete {
			img = c.Before
		}
		row := c.Table + "/" + val(img, "id")
		if c.CommitLSN < last[row] {
			t.Fatalf("%s: %s at LSN %X after LSN %X", row, c.Op, c.CommitLSN, last[row])
		}
		last[row] = c.CommitLSN
		// A read is the row as of its high watermark: once the stream changed the row, every
		// later read must equal what the stream left (a stale read or a resurrected row is
		// exactly what the watermark window prevents).
		cur, streamed := state[row]
		switch {
		case c.Op == avro.OpRead && streamed && cur != rowText(img, snapTables[c.Table]):
			t.Fatalf("%s: read at LSN %X is %q, but the stream left %q", row, c.CommitLSN, rowText(img, snapTables[c.Table]), cur)
		case c.Op == avro.OpDelete:
			state[row] = "<deleted>"
		case c.Op != avro.OpRead:
			state[row] = rowText(img, snapTables[c.Table])
		}
		k := fmt.Sprintf("%s/%X/%s/%d", row, c.CommitLSN, c.Op, c.Index)
		if seen[k] {
			t.Fatalf("%s: %s at LSN %X index %d twice", row, c.Op, c.CommitLSN, c.Index)
		}
		seen[k] = true
	}
}

func reads(rs []rec, table string) map[string]int {
	out := map[string]int{}
	for _, r := range changes(rs, table) {
		if r.change.Op == avro.OpRead {
			out[val(r.change.After, "id")]++
		}
	}
	return out
}

func TestSnapshotInitialReadsThenStream(t *testing.T) {
	e := newEnv(t, "")
	e.cfg.CDC.SnapshotChunkRows = 7
	e.seed(5, 20, 2)
	r := e.start("a")
	e.waitActive()
	e.exec(`INSERT INTO incident.instance (id, name, status, severity, start_time, session_instance_id, tenant_id)
		VALUES (500, 'after', 'TRIGGERED', 'LOW', now(), 1, 't1')`)

	c := e.consume(e.snapTopics()...)
	got := c.until(60*time.Second, func(rs []rec) error {
		if n := len(reads(rs, "incident.instance")) + len(reads(rs, "incident.timeline")) + len(reads(rs, "session.instance")); n < 65 {
			return fmt.Errorf("%d distinct rows read of 65", n)
		}
		for _, g := range changes(rs, "incident.instance") {
			if g.change.Op == avro.OpCreate {
				return nil
			}
		}
		return errors.New("no streamed create yet")
	})
	ends := map[string]bool{}
	var maxRead uint64
	for _, g := range got {
		if g.kind == "txn-end" {
			ends[fmt.Sprintf("%s/%X", g.r.Key, g.end.CommitLSN)] = true
		}
	}
	for _, g := range got {
		if g.kind != "change" || g.change.Op != avro.OpRead {
			continue
		}
		ch := g.change
		want := val(ch.After, "id")
		if ch.Table == "incident.timeline" {
			want = val(ch.After, "incident_instance_id")
		}
		if string(g.r.Key) != want || header(g.r, "walhook-op") != "read" || ch.Xid == 0 {
			t.Fatalf("%s read: key %q (want %q), op header %q, xid %d", ch.Table, g.r.Key, want, header(g.r, "walhook-op"), ch.Xid)
		}
		if ch.Table != "session.instance" && !ends[fmt.Sprintf("%s/%X", g.r.Key, ch.CommitLSN)] {
			t.Fatalf("%s read of root %s at LSN %X has no transaction end", ch.Table, g.r.Key, ch.CommitLSN)
		}
		maxRead = max(maxRead, ch.CommitLSN)
	}
	for _, g := range changes(got, "incident.instance") {
		if g.change.Op == avro.OpCreate && g.change.CommitLSN <= maxRead {
			t.Fatalf("streamed create at LSN %X not after the reads (up to %X)", g.change.CommitLSN, maxRead)
		}
	}
	for tb, n := range map[string]int{"incident.instance": 20, "incident.timeline": 40, "session.instance": 5} {
		rd := reads(got, tb)
		if len(rd) != n {
			t.Fatalf("%s: %d rows read, want %d", tb, len(rd), n)
		}
		for id, k := range rd {
			if k != 1 {
				t.Fatalf("%s id %s read %d times", tb, id, k)
			}
		}
		// Progress is per snapshot unit: timeline rows are read with their roots.
		if p := e.snapProgressOf()[tb]; (tb == "incident.timeline") != (p == nil) || p != nil && (!p.Done || p.Rows != int64(n)) {
			t.Fatalf("%s progress %+v", tb, p)
		}
	}
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// writer changes the demo tables at random until stopped; it reports its first error.
type writer struct {
	stop chan struct{}
	done chan error
	ops  atomic.Int64 // changes committed so far
	once sync.Once
	err  error
}

func (e *env) startWriter(seed uint64, maxID int) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan error, 1)}
	conn := e.connect()
	rnd := rand.New(rand.NewPCG(seed, 1))
	next := 100000
	// Stop before the connection closes (cleanups run last-registered first), even when the
	// test failed early.
	e.t.Cleanup(func() { _ = w.wait() })
	go func() {
		ctx := context.Background()
		for {
			select {
			case <-w.stop:
				w.done <- nil
				return
			default:
			}
			id := 1 + rnd.IntN(maxID)
			var sql string
			var args []any
			switch rnd.IntN(6) {
			case 0:
				next++
				sql, args = `INSERT INTO incident.instance (id, name, status, severity, start_time, session_instance_id, tenant_id)
					VALUES ($1, 'new', 'TRIGGERED', 'HIGH', now(), 1, 't1')`, []any{next}
			case 1:
				sql, args = `UPDATE incident.instance SET name = 'upd ' || $2::int::text, status = 'RESOLVED' WHERE id = $1`, []any{id, rnd.IntN(1000)}
			case 2:
				sql, args = `INSERT INTO incident.timeline (incident_instance_id, action, tenant_id) SELECT $1, 'COMMENTED', 't1' WHERE EXISTS (SELECT 1 FROM incident.instance WHERE id = $1)`, []any{id}
			case 3:
				sql, args = `UPDATE incident.timeline SET description = 'd' || $2::int::text WHERE id = (SELECT min(id) FROM incident.timeline WHERE incident_instance_id = $1)`, []any{id, rnd.IntN(1000)}
			case 4:
				sql, args = `DELETE FROM incident.timeline WHERE id = (SELECT max(id) FROM incident.timeline WHERE incident_instance_id = $1)`, []any{id}
			case 5:
				sql, args = `UPDATE session.instance SET score = $2 WHERE id = $1`, []any{1 + id%20, rnd.IntN(1000)}
			}
			if _, err := conn.Exec(ctx, sql, args...); err != nil {
				w.done <- fmt.Errorf("writer: %.60q: %w", sql, err)
				return
			}
			w.ops.Add(1)
		}
	}()
	return w
}

func (w *writer) wait() error {
	w.once.Do(func() {
		close(w.stop)
		w.err = <-w.done
	})
	return w.err
}

func (w *writer) halt(t *testing.T) {
	t.Helper()
	if err := w.wait(); err != nil {
		t.Fatal(err)
	}
}

// caughtUp waits until the slot confirmed everything written so far.
func (e *env) caughtUp() {
	e.t.Helper()
	lsn := e.currentLSN()
	kafkatest.Eventually(e.t, 60*time.Second, func() error {
		if c := e.confirmedFlush(); c < lsn {
			return fmt.Errorf("confirmed %X < %X", c, lsn)
		}
		return nil
	})
}

func TestSnapshotHandoffWithConcurrentWrites(t *testing.T) {
	e := newEnv(t, "")
	e.cfg.CDC.SnapshotChunkRows = 25
	e.seed(20, 300, 2)
	w := e.startWriter(7, 300)
	r := e.start("a")
	e.waitActive() // the snapshot is finished
	// Streamed changes after the handoff too, not only during the snapshot.
	after := w.ops.Load() + 50
	kafkatest.Eventually(t, 30*time.Second, func() error {
		if n := w.ops.Load(); n < after {
			return fmt.Errorf("the writer made %d changes, want %d", n, after)
		}
		return nil
	})
	w.halt(t)
	e.caughtUp()

	want := e.dbRows()
	c := e.consume(e.snapTopics()...)
	got := c.until(60*time.Second, func(rs []rec) error { return sameRows(fold(rs), want) })
	checkOrder(t, got)
	if n := len(reads(got, "incident.instance")); n < 250 {
		t.Fatalf("only %d incidents read", n)
	}
	t.Logf("%d writer changes, %d records", w.ops.Load(), len(got))
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestSnapshotResumesAfterCrash(t *testing.T) {
	e := newEnv(t, "")
	e.cfg.CDC.SnapshotChunkRows = 10
	e.seed(3, 3000, 0)
	a := e.start("a")
	kafkatest.Eventually(t, 60*time.Second, func() error {
		if p := e.snapProgressOf()["incident.instance"]; p == nil || p.Chunks < 5 {
			return fmt.Errorf("progress %+v", p)
		}
		return nil
	})
	if err := a.stop(); err != nil {
		t.Fatalf("Run a: %v", err)
	}
	p1 := e.snapProgressOf()["incident.instance"]
	if p1.Done || len(p1.LastKey) != 1 {
		t.Fatalf("progress after the stop: %+v (the snapshot must be stopped midway)", p1)
	}
	lastDone, _ := strconv.Atoi(p1.LastKey[0])

	b := e.start("b")
	e.waitActive()
	c := e.consume(e.snapTopics()...)
	got := c.until(60*time.Second, func(rs []rec) error {
		if n := len(reads(rs, "incident.instance")); n < 3000 {
			return fmt.Errorf("%d incidents read", n)
		}
		return nil
	})
	for id, n := range reads(got, "incident.instance") {
		i, _ := strconv.Atoi(id)
		if i <= lastDone && n != 1 {
			t.Fatalf("incident %d (in a chunk finished before the crash, up to %d) read %d times", i, lastDone, n)
		}
	}
	p2 := e.snapProgressOf()["incident.instance"]
	if !p2.Done || p2.Gen != p1.Gen || p2.Chunks <= p1.Chunks {
		t.Fatalf("progress after resume %+v, before %+v", p2, p1)
	}
	t.Logf("stopped after key %d (%d chunks); resumed to %d chunks", lastDone, p1.Chunks, p2.Chunks)
	if err := b.stop(); err != nil {
		t.Fatalf("Run b: %v", err)
	}
}

func TestSnapshotResnapshotWhileStreaming(t *testing.T) {
	e := newEnv(t, "")
	e.cfg.CDC.SnapshotChunkRows = 10
	e.seed(20, 50, 1)
	r := e.start("a")
	e.waitActive()
	before := e.snapProgressOf()["incident.instance"]

	w := e.startWriter(11, 50)
	ctx := context.Background()
	if _, err := RequestResnapshot(ctx, e.cfg, "incident.nope"); err == nil {
		t.Fatal("resnapshot of a table outside the model: no error")
	}
	if _, err := RequestResnapshot(ctx, e.cfg, "incident.instance"); err != nil {
		t.Fatal(err)
	}
	// The writer inserts at the end of the key range; it stops once the resnapshot is under
	// way so the snapshot can catch up with the table's end.
	kafkatest.Eventually(t, 60*time.Second, func() error {
		if p := e.snapProgressOf()["incident.instance"]; p == nil || p.Gen == before.Gen || p.Chunks < 2 {
			return fmt.Errorf("progress %+v", p)
		}
		return nil
	})
	w.halt(t)
	kafkatest.Eventually(t, 60*time.Second, func() error {
		if p := e.snapProgressOf()["incident.instance"]; !p.Done {
			return fmt.Errorf("progress %+v", p)
		}
		return nil
	})
	e.caughtUp()

	want := e.dbRows()
	c := e.consume(e.snapTopics()...)
	readTwice := func(rs []rec) int {
		n := 0
		for _, reads := range reads(rs, "incident.instance") {
			if reads >= 2 {
				n++
			}
		}
		return n
	}
	// The fold can equal the table before the resnapshot's last reads are consumed (reads of
	// unchanged rows do not change it), so consumption also waits for the reads. The writer
	// deletes no incident, but a chunk drops the rows the stream changed inside its window, so
	// not every one of the 50 seeded incidents is read again: 40 leaves that room.
	got := c.until(60*time.Second, func(rs []rec) error {
		if err := sameRows(fold(rs), want); err != nil {
			return err
		}
		if n := readTwice(rs); n < 40 {
			return fmt.Errorf("only %d of the 50 seeded incidents read again by the resnapshot so far", n)
		}
		return nil
	})
	checkOrder(t, got)
	for id, n := range reads(got, "incident.timeline") {
		if n > 2 {
			t.Fatalf("timeline row %s read %d times; incident.instance (with its timeline) was re-snapshotted once", id, n)
		}
	}
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
