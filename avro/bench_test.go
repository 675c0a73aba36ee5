package avro

import (
	"testing"
	"time"
)

// benchRow is a ~150-byte incident-like row: ints, text, timestamptz, bool
// and a nullable text.
func benchRow() []Cell {
	return []Cell{
		text("134"), text("Face not detected"), {Kind: CellNull}, text("RESOLVED"), text("LOW"),
		text("2026-02-03 10:46:23.26+00"), text("2026-02-03 11:15:00+00"),
		text("Candidate adjusting camera."), text("2523"), {Kind: CellNull},
		text("f"), text("7"), text("2026-02-03 09:57:55.341+00"), text("1"), text("2026-02-03 11:15:00+00"), text("1"),
	}
}

func BenchmarkAppendChange(b *testing.B) {
	s, err := NewChangeSchema(incidentTable())
	if err != nil {
		b.Fatal(err)
	}
	row := benchRow()
	textBytes := 0
	for _, c := range row {
		textBytes += len(c.Data)
	}
	h := ChangeHeader{Op: OpUpdate, CommitLSN: 0x16B3748, Xid: 4242, CommitTime: time.Now(), Index: 1}
	dst := make([]byte, 0, 1024)
	b.SetBytes(int64(textBytes))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if dst, err = s.AppendChange(dst[:0], h, nil, row); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

func BenchmarkDecodeChange(b *testing.B) {
	s, err := NewChangeSchema(incidentTable())
	if err != nil {
		b.Fatal(err)
	}
	body, err := s.AppendChange(nil, ChangeHeader{Op: OpUpdate, CommitTime: time.Now()}, nil, benchRow())
	if err != nil {
		b.Fatal(err)
	}
	d, err := NewChangeDecoder(s.JSON())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Decode(body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
