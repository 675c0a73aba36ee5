package cdc

import (
	"strings"
	"testing"
)

func TestParseSnapshotAndVisibility(t *testing.T) {
	s, err := parseSnapshot("100:110:107,102,104")
	if err != nil {
		t.Fatal(err)
	}
	if s.xmin != 100 || s.xmax != 110 || len(s.xip) != 3 || s.xip[0] != 102 || s.xip[2] != 107 {
		t.Fatalf("parsed %+v", s)
	}
	for xid, want := range map[uint32]bool{99: true, 100: true, 101: true, 102: false, 104: false, 105: true, 107: false, 109: true, 110: false, 200: false} {
		if got := s.sees(xid); got != want {
			t.Errorf("sees(%d) = %v, want %v", xid, got, want)
		}
	}
	// Epoch-qualified xid8 values near wraparound: pgoutput sends the low 32 bits.
	w, err := parseSnapshot("8589934590:8589934595:8589934592")
	if err != nil {
		t.Fatal(err)
	}
	if w.xmin != 4294967294 || w.xmax != 3 {
		t.Fatalf("wrapped snapshot parsed %+v", w)
	}
	for xid, want := range map[uint32]bool{4294967293: true, 4294967295: true, 0: false, 1: true, 3: false} {
		if got := w.sees(xid); got != want {
			t.Errorf("wrapped sees(%d) = %v, want %v", xid, got, want)
		}
	}
	for _, bad := range []string{"", "1:2", "a:2:", "1:2:3,x"} {
		if _, err := parseSnapshot(bad); err == nil {
			t.Errorf("parseSnapshot(%q) accepted", bad)
		}
	}
}

func TestCommitLogStale(t *testing.T) {
	const chunkTable, other = 16384, 16385
	mask := tableBit(chunkTable)
	snap, _ := parseSnapshot("100:110:105")

	l := newCommitLog()
	l.add(99, mask)
	l.add(101, mask)
	l.add(105, tableBit(other)) // missed by the snapshot, but another table's
	open := l.n
	l.add(105, mask) // after the low watermark: inside the window, handled by touched rows
	if why := l.stale(open, snap, mask); why != "" {
		t.Fatalf("stale without a missed transaction before the window: %s", why)
	}

	l = newCommitLog()
	l.add(101, mask)
	l.add(105, mask|tableBit(other)) // committed before the low watermark, in the snapshot's xip
	if why := l.stale(l.n, snap, mask); !strings.Contains(why, "transaction 105") {
		t.Fatalf("stale = %q, want transaction 105 reported", why)
	}
	l = newCommitLog()
	l.add(111, mask) // at or past xmax: not seen either
	if why := l.stale(l.n, snap, mask); !strings.Contains(why, "transaction 111") {
		t.Fatalf("stale = %q, want transaction 111 reported", why)
	}

	// A wrapped ring: an overwritten xid the snapshot may not see, or an xip entry that
	// committed but is no longer in the ring, cannot be decided and reads the chunk again.
	l = newCommitLog()
	for i := 0; i < commitLogSize; i++ {
		l.add(uint32(1000+i), 0)
	}
	l.add(70000, 0) // overwrites xid 1000
	if why := l.stale(l.n, snap, mask); !strings.Contains(why, "no longer holds xid 1000") {
		t.Fatalf("stale = %q, want the overwritten xid reported", why)
	}
	recent, _ := parseSnapshot("70001:70010:70005")
	if why := l.stale(l.n, recent, mask); why != "" {
		t.Fatalf("stale = %q for a snapshot that sees everything overwritten", why)
	}
	recent.committedXip = []uint32{70005}
	if why := l.stale(l.n, recent, mask); !strings.Contains(why, "no longer holds xid 70005") {
		t.Fatalf("stale = %q, want the committed xip entry missing from the ring reported", why)
	}
	l.add(70005, 0)
	if why := l.stale(l.n, recent, mask); why != "" {
		t.Fatalf("stale = %q once the ring holds the committed xip entry", why)
	}
}
