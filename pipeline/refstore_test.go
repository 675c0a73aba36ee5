package pipeline

import (
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
)

// storeFixture is a reference store over an in-memory Pebble with one table, session.instance,
// projecting status and score.
type storeFixture struct {
	t    *testing.T
	refs *refTables
	tbl  *refTable
	now  time.Time
}

func newStoreFixture(t *testing.T, history time.Duration) *storeFixture {
	t.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: pebbleLogger{zap.NewNop().Sugar()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	rm := &rootModel{refs: []*config.Reference{{Table: "session.instance", Column: "session_instance_id", Key: "id", Field: "session",
		Columns: []string{"status", "score"}, Reemit: true}}}
	layout := newRefLayout([]*rootModel{rm})
	refs, err := newRefTables(db, layout, map[string]int{"session.instance": 1}, history)
	if err != nil {
		t.Fatal(err)
	}
	refs.re = newRefChanges(db, layout, []string{"session.instance"})
	f := &storeFixture{t: t, refs: refs, tbl: layout["session.instance"], now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	refs.now = func() time.Time { return f.now }
	return f
}

// write applies changes of one batch; each at its commit LSN, written at f.now.
func (f *storeFixture) write(changes ...storeChange) {
	f.t.Helper()
	rb, err := f.refs.newBatch()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, c := range changes {
		switch {
		case c.truncate:
			err = rb.truncate(f.tbl, c.lsn)
		default:
			ch := &avro.Change{Table: "session.instance", Op: c.op, CommitLSN: c.lsn, CommitTime: f.now}
			if c.status != "" {
				ch.After = &avro.Row{Columns: []string{"id", "status", "score"}, Values: []any{int32(7), c.status, c.score}}
				if c.score == nil {
					ch.After.Values[2] = nil
				}
				if c.unchangedScore {
					ch.Unchanged = []string{"score"}
				}
			}
			err = rb.change(f.tbl, c.key, ch, f.now, c.gap)
		}
		if err != nil {
			f.t.Fatal(err)
		}
	}
	rb.mark("session.instance", 0, changes[len(changes)-1].lsn)
	if err := rb.apply(); err != nil {
		f.t.Fatal(err)
	}
}

type storeChange struct {
	key            string
	lsn            uint64
	op             avro.Op
	status         string
	score          any
	unchangedScore bool
	gap            bool
	truncate       bool
}

func upsert(key string, lsn uint64, status string, score any) storeChange {
	return storeChange{key: key, lsn: lsn, op: avro.OpUpdate, status: status, score: score}
}

// at is the projection of key as of lsn, as "status/score", "null", with "~" prepended when the
// store reports it inexact (and the reason after it).
func (f *storeFixture) at(key string, lsn uint64) string {
	f.t.Helper()
	r, err := f.refs.asOf("session.instance", key, lsn)
	if err != nil {
		f.t.Fatal(err)
	}
	out := "null"
	if vals := r.v.project([]int{0, 1}); vals != nil {
		out = fmt.Sprintf("%s/%s", vals[0], vals[1])
	}
	if !r.exact {
		out = "~" + out + " " + r.reason
	}
	return out
}

func (f *storeFixture) expect(key string, want map[uint64]string) {
	f.t.Helper()
	for lsn, w := range want {
		if got := f.at(key, lsn); got != w {
			f.t.Errorf("key %s as of LSN %d: %s, want %s", key, lsn, got, w)
		}
	}
}

// TestRefStoreAsOf: every LSN sees the newest version at or below it; null before the row
// existed and from its delete to its re-insert; the same answer from the cache (newest version)
// and from Pebble (older ones), in any lookup order.
func TestRefStoreAsOf(t *testing.T) {
	f := newStoreFixture(t, 24*time.Hour)
	f.write(storeChange{key: "7", lsn: 100, op: avro.OpCreate, status: "IN_PROGRESS"})
	f.write(upsert("7", 200, "COMPLETED", int32(85)), upsert("8", 200, "SCHEDULED", nil))
	f.write(storeChange{key: "7", lsn: 300, op: avro.OpDelete})
	f.write(storeChange{key: "7", lsn: 400, op: avro.OpCreate, status: "CANCELLED", score: int32(1)})
	want := map[uint64]string{
		99: "null", 100: `"IN_PROGRESS"/null`, 199: `"IN_PROGRESS"/null`, 200: `"COMPLETED"/85`, 299: `"COMPLETED"/85`,
		300: "null", 399: "null", 400: `"CANCELLED"/1`, 1 << 40: `"CANCELLED"/1`,
	}
	f.expect("7", want)
	f.refs.mu.Lock()
	clear(f.refs.cache) // the same answers from Pebble alone, newest first this time
	f.refs.mu.Unlock()
	f.expect("7", map[uint64]string{1 << 40: `"CANCELLED"/1`, 150: `"IN_PROGRESS"/null`, 250: `"COMPLETED"/85`, 350: "null", 50: "null"})
	f.expect("8", map[uint64]string{199: "null", 200: `"SCHEDULED"/null`})
	f.expect("9", map[uint64]string{500: "null"})
}

// TestRefStoreSameTransactionAndReplay: a row changed twice in one transaction keeps its last
// image; a change older than the newest version (the cdc stage sending a transaction again after
// a restart) changes nothing; an unchanged TOAST column keeps its previous value.
func TestRefStoreSameTransactionAndReplay(t *testing.T) {
	f := newStoreFixture(t, 24*time.Hour)
	f.write(storeChange{key: "7", lsn: 100, op: avro.OpCreate, status: "IN_PROGRESS", score: int32(1)},
		upsert("7", 100, "COMPLETED", int32(2)))
	f.write(upsert("7", 200, "CANCELLED", int32(3)))
	f.write(upsert("7", 100, "SCHEDULED", int32(9))) // replayed, older than the newest
	f.write(storeChange{key: "7", lsn: 300, op: avro.OpUpdate, status: "IN_PROGRESS", unchangedScore: true})
	f.expect("7", map[uint64]string{100: `"COMPLETED"/2`, 200: `"CANCELLED"/3`, 300: `"IN_PROGRESS"/3`})
}

// TestRefStoreGaps: a version read right after offsets compaction skipped is flagged, so a lookup
// below it is reported (with the newest version), never answered silently; a lookup at or above
// it is exact. A row whose first version is an initial-snapshot read is unknown below it.
func TestRefStoreGaps(t *testing.T) {
	f := newStoreFixture(t, 24*time.Hour)
	f.write(storeChange{key: "7", lsn: 200, op: avro.OpUpdate, status: "COMPLETED", score: int32(85), gap: true})
	f.write(upsert("7", 300, "CANCELLED", nil))
	f.expect("7", map[uint64]string{
		100: `~"CANCELLED"/null history_removed`, 200: `"COMPLETED"/85`, 300: `"CANCELLED"/null`,
	})
	f.write(storeChange{key: "8", lsn: 400, op: avro.OpRead, status: "SCHEDULED"})
	f.write(storeChange{key: "9", lsn: 100, op: avro.OpCreate, status: "SCHEDULED"}, storeChange{key: "9", lsn: 400, op: avro.OpRead, status: "IN_PROGRESS"})
	f.expect("8", map[uint64]string{350: `~"SCHEDULED"/null before_snapshot_read`, 400: `"SCHEDULED"/null`})
	f.expect("9", map[uint64]string{350: `"SCHEDULED"/null`, 400: `"IN_PROGRESS"/null`}) // streamed before the read: known
}

// TestRefStoreTruncate: a lookup at or after a truncation ignores every version below it (rows
// the truncating transaction wrote, at its LSN, stay); a lookup before it still sees them.
func TestRefStoreTruncate(t *testing.T) {
	f := newStoreFixture(t, 24*time.Hour)
	f.write(upsert("7", 100, "IN_PROGRESS", nil), upsert("8", 100, "SCHEDULED", nil))
	f.write(upsert("7", 200, "COMPLETED", int32(85)))
	f.write(storeChange{lsn: 300, truncate: true}, upsert("8", 300, "CANCELLED", nil))
	f.write(upsert("9", 350, "SCHEDULED", nil))
	f.write(storeChange{lsn: 400, truncate: true})
	f.expect("7", map[uint64]string{150: `"IN_PROGRESS"/null`, 299: `"COMPLETED"/85`, 300: "null", 1000: "null"})
	f.expect("8", map[uint64]string{299: `"SCHEDULED"/null`, 300: `"CANCELLED"/null`, 399: `"CANCELLED"/null`, 400: "null"})
	f.expect("9", map[uint64]string{349: "null", 350: `"SCHEDULED"/null`, 400: "null"})
	f.write(upsert("7", 500, "IN_PROGRESS", int32(1))) // inserted again after the truncation
	f.expect("7", map[uint64]string{450: "null", 500: `"IN_PROGRESS"/1`, 250: `"COMPLETED"/85`})
}

// TestRefStorePrune: versions superseded at or below the group's horizon go once their successor
// is older than the grace; those above it stay however old (bubble-up hours behind) until the
// history bound, beyond which they go too and a lookup below the oldest kept version is reported.
// The change log of a re-emitting table goes below the horizon only.
func TestRefStorePrune(t *testing.T) {
	f := newStoreFixture(t, 24*time.Hour)
	start := f.now
	for i := range 10 { // one version an hour
		f.write(upsert("7", uint64(100*(i+1)), "IN_PROGRESS", int32(i)))
		f.now = f.now.Add(time.Hour)
	}
	all := map[uint64]string{}
	for i := range 10 {
		all[uint64(100*(i+1))] = fmt.Sprintf(`"IN_PROGRESS"/%d`, i)
	}
	horizon := uint64(0)
	f.refs.horizon = func() (uint64, bool) { return horizon, horizon > 0 }
	mustPrune := func() int64 {
		t.Helper()
		n, err := f.refs.prune(f.now, 1000)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := mustPrune(); n != 0 { // horizon unknown, all younger than a day
		t.Fatalf("pruned %d versions with no horizon and nothing beyond the history", n)
	}
	f.expect("7", all)

	horizon = 400 // the slowest partition is at LSN 400, 7 hours behind
	if n := mustPrune(); n != 3 {
		t.Fatalf("pruned %d versions below horizon 400, want 3 (100, 200, 300)", n)
	}
	delete(all, 100)
	delete(all, 200)
	delete(all, 300)
	f.expect("7", all)
	if got := f.at("7", 399); got != `~"IN_PROGRESS"/9 history_removed` {
		t.Fatalf("below the oldest kept version: %s, want the newest, reported", got)
	}
	changes, err := f.refs.re.between([]string{"session.instance"}, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 7 || changes[0].lsn != 400 {
		t.Fatalf("change log after pruning below 400: %d entries from %v, want 7 from 400", len(changes), changes)
	}

	f.now = start.Add(24*time.Hour + 5*time.Hour + time.Minute) // 400 and 500 were superseded more than a day ago
	horizon = 0
	if n := mustPrune(); n != 2 {
		t.Fatalf("pruned %d versions beyond the history bound, want 2 (400, 500)", n)
	}
	f.expect("7", map[uint64]string{600: `"IN_PROGRESS"/5`, 1000: `"IN_PROGRESS"/9`, 550: `~"IN_PROGRESS"/9 history_removed`})
	if c := f.refs.versionCount(); c != 5 {
		t.Fatalf("%d versions counted, want 5", c)
	}
}
