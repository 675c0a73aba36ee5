package cdc

import (
	"encoding/binary"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/walhook/walhook/avro"
)

// tuple builds a TupleData: cells are "n" (null), "u" (unchanged) or "t:<text>".
func tuple(cells ...string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(cells)))
	for _, c := range cells {
		switch {
		case c == "n" || c == "u":
			b = append(b, c[0])
		default:
			b = append(b, 't')
			b = binary.BigEndian.AppendUint32(b, uint32(len(c)-2))
			b = append(b, c[2:]...)
		}
	}
	return b
}

func rowMsg(typ byte, xid uint32, rel uint32, parts ...[]byte) []byte {
	b := []byte{typ}
	if xid != 0 {
		b = binary.BigEndian.AppendUint32(b, xid)
	}
	b = binary.BigEndian.AppendUint32(b, rel)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func TestDecodeRow(t *testing.T) {
	var d decoder
	rc, err := d.decodeRow(rowMsg('I', 0, 7, []byte{'N'}, tuple("t:1", "n", "t:x")), false)
	if err != nil || rc.op != avro.OpCreate || rc.relID != 7 || len(rc.new) != 3 || string(rc.new[2].Data) != "x" || rc.new[1].Kind != avro.CellNull {
		t.Fatalf("insert: %+v %v", rc, err)
	}
	rc, err = d.decodeRow(rowMsg('U', 99, 7, []byte{'O'}, tuple("t:1", "t:old"), []byte{'N'}, tuple("t:1", "u")), true)
	if err != nil || rc.xid != 99 || rc.old == nil || rc.oldIsKey || rc.new[1].Kind != avro.CellUnchanged {
		t.Fatalf("update: %+v %v", rc, err)
	}
	rc, err = d.decodeRow(rowMsg('D', 0, 7, []byte{'K'}, tuple("t:1", "n")), false)
	if err != nil || rc.op != avro.OpDelete || !rc.oldIsKey || rc.new != nil {
		t.Fatalf("delete: %+v %v", rc, err)
	}
	for name, bad := range map[string][]byte{
		"truncated length": rowMsg('I', 0, 7, []byte{'N', 0, 1, 't', 0, 0, 0, 9, 'a'}),
		"no tuple":         rowMsg('I', 0, 7),
		"trailing":         append(rowMsg('I', 0, 7, []byte{'N'}, tuple("t:1")), 0),
		"binary":           rowMsg('I', 0, 7, []byte{'N', 0, 1, 'b', 0, 0, 0, 0}),
		"delete new tuple": rowMsg('D', 0, 7, []byte{'N'}, tuple("t:1")),
	} {
		if _, err := d.decodeRow(bad, false); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzDecodeRow(f *testing.F) {
	f.Add(rowMsg('I', 0, 7, []byte{'N'}, tuple("t:1", "n", "u")), false)
	f.Add(rowMsg('U', 5, 7, []byte{'K'}, tuple("t:1"), []byte{'N'}, tuple("t:2")), true)
	f.Fuzz(func(t *testing.T, msg []byte, inStream bool) {
		var d decoder
		_, _ = d.decodeRow(msg, inStream) // must not panic
	})
}

func TestTrackerConfirmsInOrder(t *testing.T) {
	tr := newTracker(10)
	a, b := tr.open(), tr.open()
	tr.add(a, 1)
	tr.add(b, 1)
	tr.close(a, 20)
	tr.close(b, 30)
	tr.done(b, 1, nil)
	if c, _ := tr.state(); c != 10 {
		t.Fatalf("confirmed %s before the older transaction was acked", c)
	}
	if tr.idle(100) {
		t.Fatal("idle while transactions are in flight")
	}
	tr.done(a, 1, nil)
	if c, _ := tr.state(); c != 30 {
		t.Fatalf("confirmed %s, want 30", c)
	}
	if !tr.idle(40) {
		t.Fatal("not idle")
	}
	if c, _ := tr.state(); c != pglogrepl.LSN(40) {
		t.Fatalf("confirmed %s, want 40", c)
	}
}

func TestSpillKeepsOrderAndDropsAbortedSubtransactions(t *testing.T) {
	dir := t.TempDir()
	s := newSpillBuffers(dir, 64, nil)
	msgs := [][]byte{}
	for i := 0; i < 50; i++ {
		sub := uint32(1)
		if i%5 == 0 {
			sub = 2
		}
		m := []byte{'I', byte(i), byte(i), byte(i)}
		if err := s.add(1, sub, m); err != nil {
			t.Fatal(err)
		}
		if sub == 1 {
			msgs = append(msgs, m)
		}
	}
	if s.disk == 0 {
		t.Fatal("nothing spilled past the limit")
	}
	if err := s.abort(1, 2); err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	if err := s.replay(1, func(m []byte) error { got = append(got, append([]byte(nil), m...)); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("replayed %d, want %d", len(got), len(msgs))
	}
	for i := range got {
		if string(got[i]) != string(msgs[i]) {
			t.Fatalf("message %d: %v, want %v", i, got[i], msgs[i])
		}
	}
	if s.mem != 0 || s.disk != 0 || len(s.txns) != 0 {
		t.Fatalf("left over: mem %d disk %d txns %d", s.mem, s.disk, len(s.txns))
	}
}
