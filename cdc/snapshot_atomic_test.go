package cdc

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/walhook/walhook/avro"
)

// TestSnapshotRootAtomicChunks: incidents with timeline rows exist before the first start and
// a writer changes roots and timelines while the snapshot runs. Every pre-existing root is read
// in one chunk with all its timeline rows: its reads share one commit LSN and are followed by
// exactly one transaction end (header walhook-op: read), with no other record of the root in
// between; folding the topics still gives the database.
func TestSnapshotRootAtomicChunks(t *testing.T) {
	e := newEnv(t, "")
	e.cfg.CDC.SnapshotChunkRows = 9
	const incidents = 120
	e.seed(10, incidents, 3)
	w := e.startWriter(23, incidents)
	r := e.start("a")
	e.waitActive()
	w.halt(t)
	e.caughtUp()

	want := e.dbRows()
	c := e.consume(e.snapTopics()...)
	got := c.until(60*time.Second, func(rs []rec) error { return sameRows(fold(rs), want) })
	checkOrder(t, got)

	type rootReads struct {
		lsn     uint64 // of the reads (and the read transaction end)
		reads   int
		ends    int
		tables  map[string]int
		endSeen bool
	}
	roots := map[string]*rootReads{}
	topic := e.cfg.Kafka.ChangeTopic(e.cfg.Model.Roots[0])
	for _, g := range got {
		if g.r.Topic != topic {
			continue
		}
		key := string(g.r.Key)
		rr := roots[key]
		switch {
		case g.kind == "change" && g.change.Op == avro.OpRead:
			if rr == nil {
				rr = &rootReads{lsn: g.change.CommitLSN, tables: map[string]int{}}
				roots[key] = rr
			}
			if g.change.CommitLSN != rr.lsn {
				t.Fatalf("root %s: %s read at LSN %X, but its other reads are at %X (not one chunk)", key, g.change.Table, g.change.CommitLSN, rr.lsn)
			}
			if rr.endSeen {
				t.Fatalf("root %s: %s read after the transaction end of its chunk", key, g.change.Table)
			}
			rr.reads++
			rr.tables[g.change.Table]++
		case g.kind == "txn-end" && header(g.r, "walhook-op") == "read":
			if rr == nil {
				rr = &rootReads{lsn: g.end.CommitLSN, tables: map[string]int{}}
				roots[key] = rr // every row of the root was left to the stream
			}
			if g.end.CommitLSN != rr.lsn {
				t.Fatalf("root %s: read transaction end at LSN %X, reads at %X", key, g.end.CommitLSN, rr.lsn)
			}
			rr.ends++
			rr.endSeen = true
			if int(g.end.Rows) != rr.reads {
				t.Fatalf("root %s: transaction end counts %d rows, %d read", key, g.end.Rows, rr.reads)
			}
		case rr != nil && !rr.endSeen:
			t.Fatalf("root %s: %s record at LSN %s between its reads and their transaction end", key, g.kind, header(g.r, "walhook-lsn"))
		}
	}
	withTimeline := 0
	for id := 1; id <= incidents; id++ {
		rr := roots[fmt.Sprint(id)]
		if rr == nil {
			continue // deleted? the writer never deletes incidents
		}
		if rr.ends != 1 {
			t.Fatalf("root %d: %d read transaction ends, want 1", id, rr.ends)
		}
		if rr.tables["incident.timeline"] > 0 {
			withTimeline++
		}
	}
	if len(roots) < incidents || withTimeline < incidents/2 {
		t.Fatalf("%d roots read (want %d), %d of them with timeline rows", len(roots), incidents, withTimeline)
	}
	// The writer keeps inserting incidents above every key that existed when the snapshot
	// began: those reach Kafka as inserts, and chunks never chase them (a busy table's snapshot
	// must end).
	progress := e.snapProgressOf()["incident.instance"]
	if progress == nil || len(progress.UpperKey) != 1 {
		t.Fatalf("incident.instance progress %+v has no upper key", progress)
	}
	upper, _ := strconv.Atoi(progress.UpperKey[0])
	for key, rr := range roots {
		if id, _ := strconv.Atoi(key); id > upper && rr.reads > 0 {
			t.Fatalf("root %s, above the snapshot's upper key %d, was read by a chunk", key, upper)
		}
	}
	var above int
	if err := e.db.QueryRow(context.Background(), `SELECT count(*) FROM incident.instance WHERE id > $1`, upper).Scan(&above); err != nil || above == 0 {
		t.Fatalf("the writer inserted no incident above the upper key %d (%v)", upper, err)
	}
	if p := e.snapProgressOf(); p["incident.timeline"] != nil || !p["incident.instance"].Done || !p["session.instance"].Done {
		t.Fatalf("progress: timeline %+v, instance %+v, session %+v", p["incident.timeline"], p["incident.instance"], p["session.instance"])
	}
	t.Logf("%d writer changes, %d records, %d roots (%d inserted above the upper key %d)", w.ops.Load(), len(got), len(roots), above, upper)
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
