package cdc

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// A chunk's reads must reflect every transaction whose commit the stream decoded before the
// chunk's low watermark: the stream wrote that transaction's changes before the window
// opened, so nothing drops a stale read of its rows. PostgreSQL writes a commit record (and
// wakes the low watermark's writer, whose WAL flush covered it) before it takes the
// transaction out of the ProcArray, so a snapshot taken right after the low watermark can
// still miss it. The miss is common under concurrent writes, not a corner case.
//
// The exact rule used here: the stream remembers the xids of the transactions it decoded
// most recently (commitLog); the chunk records the snapshot its reads used (readSnapshot);
// when the window closes, a transaction decoded before the low watermark that the snapshot
// did not see, and that changed one of the chunk's tables, makes the chunk read again. A
// polling check in SQL cannot decide this: pg_xact is updated after the commit record too,
// and it cannot tell a commit before the low watermark from one after it.

// commitLogSize is how many recent transactions the stream remembers. A transaction that
// the read snapshot missed was still in the ProcArray when the snapshot was taken, a few
// milliseconds after its commit record at most; 65,536 commits cover that at any commit
// rate PostgreSQL reaches. If an entry the check needs was overwritten, the check says so
// and the chunk is read again (see commitLog.missed).
const commitLogSize = 1 << 16

// commitEntry is one decoded transaction: its xid and a 64-bit mask of the tables (by OID
// modulo 64) whose rows it changed.
type commitEntry struct {
	xid    uint32
	tables uint64
}

// commitLog is a ring of the transactions the stream decoded, in decode (commit) order.
// Owned by the stream goroutine.
type commitLog struct {
	ring []commitEntry
	n    uint64 // transactions recorded; the next one gets sequence number n
	// newestEvicted is the newest (in xid order) xid overwritten in the ring, valid when
	// n > len(ring): a snapshot whose xmax does not follow it may have missed it.
	newestEvicted uint32
}

func newCommitLog() *commitLog { return &commitLog{ring: make([]commitEntry, commitLogSize)} }

func tableBit(oid uint32) uint64 { return 1 << (oid % 64) }

// add records a decoded transaction that changed rows of the tables in mask.
func (l *commitLog) add(xid uint32, mask uint64) {
	i := l.n % uint64(len(l.ring))
	if l.n >= uint64(len(l.ring)) {
		old := l.ring[i].xid
		if l.n == uint64(len(l.ring)) || xidFollows(old, l.newestEvicted) {
			l.newestEvicted = old
		}
	}
	l.ring[i] = commitEntry{xid: xid, tables: mask}
	l.n++
}

// stale reports a transaction decoded before sequence number before that changed a table in
// mask and that snap did not see; "" when there is none. It also reports when the ring no
// longer holds what the check needs.
func (l *commitLog) stale(before uint64, snap *readSnapshot, mask uint64) string {
	first := uint64(0)
	if l.n > uint64(len(l.ring)) {
		// The ring wrapped: what it overwrote may be a transaction the snapshot missed.
		first = l.n - uint64(len(l.ring))
		if !xidPrecedes(l.newestEvicted, snap.xmax) {
			return fmt.Sprintf("the stream's commit log no longer holds xid %d, which the read snapshot %s may have missed", l.newestEvicted, snap)
		}
		for _, x := range snap.committedXip {
			// Committed before the high watermark, so decoded by now: unless it changed
			// no published table (PostgreSQL then sends nothing), it was overwritten.
			if !l.holds(x, first) {
				return fmt.Sprintf("the stream's commit log no longer holds xid %d, which committed before the read snapshot %s saw it", x, snap)
			}
		}
	}
	for s := first; s < before && s < l.n; s++ {
		e := l.ring[s%uint64(len(l.ring))]
		if e.tables&mask != 0 && !snap.sees(e.xid) {
			return fmt.Sprintf("transaction %d committed before the low watermark but the read snapshot %s did not see it yet", e.xid, snap)
		}
	}
	return ""
}

// holds reports whether xid is among the transactions recorded from sequence number first.
func (l *commitLog) holds(xid uint32, first uint64) bool {
	for s := first; s < l.n; s++ {
		if l.ring[s%uint64(len(l.ring))].xid == xid {
			return true
		}
	}
	return false
}

// readSnapshot is the MVCC snapshot of a chunk's reads, as 32-bit xids (pgoutput's).
type readSnapshot struct {
	text       string
	xmin, xmax uint32
	xip        []uint32 // sorted
	// committedXip are the xids of xip that pg_xact had as committed after the reads, before
	// the high watermark: their commit records precede the high watermark, so the stream
	// decodes them before the window closes and the commit log must hold them.
	committedXip []uint32
}

func (s *readSnapshot) String() string { return s.text }

// sees reports whether a committed transaction is visible in the snapshot.
func (s *readSnapshot) sees(xid uint32) bool {
	if xidPrecedes(xid, s.xmin) {
		return true
	}
	if !xidPrecedes(xid, s.xmax) {
		return false
	}
	_, in := slices.BinarySearch(s.xip, xid)
	return !in
}

// xidPrecedes compares xids modulo 2^32 as PostgreSQL does for normal xids.
func xidPrecedes(a, b uint32) bool { return int32(a-b) < 0 }

func xidFollows(a, b uint32) bool { return int32(a-b) > 0 }

// parseSnapshot parses pg_current_snapshot()'s text form "xmin:xmax:xip1,xip2,...".
func parseSnapshot(text string) (*readSnapshot, error) {
	parts := strings.Split(text, ":")
	if len(parts) != 3 {
		return nil, fmt.Errorf("cdc: unexpected pg_current_snapshot() %q", text)
	}
	xid := func(s string) (uint32, error) {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cdc: unexpected xid %q in pg_current_snapshot() %q", s, text)
		}
		return uint32(v), nil // pgoutput carries the xid without its epoch
	}
	s := &readSnapshot{text: text}
	var err error
	if s.xmin, err = xid(parts[0]); err != nil {
		return nil, err
	}
	if s.xmax, err = xid(parts[1]); err != nil {
		return nil, err
	}
	if parts[2] != "" {
		for _, p := range strings.Split(parts[2], ",") {
			x, err := xid(p)
			if err != nil {
				return nil, err
			}
			s.xip = append(s.xip, x)
		}
	}
	slices.SortFunc(s.xip, func(a, b uint32) int {
		switch {
		case xidPrecedes(a, b):
			return -1
		case a == b:
			return 0
		}
		return 1
	})
	return s, nil
}

// beginReadSnapshot opens a REPEATABLE READ transaction on conn and returns its snapshot:
// the first statement takes it, and every read of the chunk uses it.
func beginReadSnapshot(ctx context.Context, conn *pgx.Conn) (*readSnapshot, error) {
	if _, err := conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		return nil, err
	}
	var text string
	if err := conn.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&text); err != nil {
		_, _ = conn.Exec(context.Background(), "ROLLBACK")
		return nil, err
	}
	return parseSnapshot(text)
}

// committedInProgress fills snap.committedXip: the xids of its xip that pg_xact has as
// committed now. It runs after the reads and before the high watermark.
func committedInProgress(ctx context.Context, conn *pgx.Conn, snap *readSnapshot) error {
	if len(snap.xip) == 0 {
		return nil
	}
	xip := snap.text[strings.LastIndexByte(snap.text, ':')+1:]
	rows, err := conn.Query(ctx, `SELECT x::text FROM unnest(string_to_array($1, ',')::xid8[]) AS x WHERE pg_xact_status(x) = 'committed'`, xip)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return err
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return fmt.Errorf("cdc: unexpected xid %q from pg_xact_status", s)
		}
		snap.committedXip = append(snap.committedXip, uint32(v))
	}
	return rows.Err()
}
