package deadletter

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestRecordParseRoundTrip: a poison record keeps the original bytes and headers, Parse gives
// them back with the source position, and a redrive record is the original exactly.
func TestRecordParseRoundTrip(t *testing.T) {
	at := time.Date(2026, 2, 3, 11, 15, 0, 0, time.UTC)
	src := &kgo.Record{Topic: "walhook.changes.x", Partition: 2, Offset: 17, Key: []byte("k\x00"), Value: []byte{0, 1, 2, 0xff},
		Timestamp: at.Add(-time.Hour), Headers: []kgo.RecordHeader{{Key: "walhook-kind", Value: []byte("change")}, {Key: "x", Value: nil}}}
	long := strings.Repeat("r", 5000)
	dl := Record("walhook.bubbleup.poison", "bubbleup", src, errors.New(long), at)
	if dl.Topic != "walhook.bubbleup.poison" || !bytes.Equal(dl.Key, src.Key) || !bytes.Equal(dl.Value, src.Value) || !dl.Timestamp.Equal(src.Timestamp) {
		t.Fatalf("poison record %+v does not keep %+v", dl, src)
	}
	dl.Partition, dl.Offset = 4, 9
	e, ok := Parse(dl)
	if !ok {
		t.Fatal("Parse refused a poison record")
	}
	want := Position{"walhook.changes.x", 2, 17}
	if e.Source != want || e.Stage != "bubbleup" || !e.At.Equal(at) || e.Partition != 4 || e.Offset != 9 || len(e.Reason) > maxReason+len("…") {
		t.Fatalf("entry %+v, want source %v, stage bubbleup, time %v, reason at most %d bytes", e, want, at, maxReason)
	}
	o := e.Original
	if o.Topic != src.Topic || o.Partition != src.Partition || !bytes.Equal(o.Key, src.Key) || !bytes.Equal(o.Value, src.Value) || fmt.Sprint(o.Headers) != fmt.Sprint(src.Headers) {
		t.Fatalf("original %+v, want %+v", o, src)
	}
	if _, ok := Parse(&kgo.Record{Key: []byte("k"), Value: []byte("v")}); ok {
		t.Fatal("Parse took a record without walhook-dlq headers")
	}
}

func TestPermanent(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("%w (uncompressed_bytes=2000000)", kerr.MessageTooLarge), true},
		{kerr.InvalidRecord, true},
		{kerr.TopicAuthorizationFailed, false},
		{kerr.RequestTimedOut, false},
		{errors.New("other"), false},
	} {
		if got := Permanent(c.err); got != c.want {
			t.Errorf("Permanent(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// TestStopErrorNamesTheSkip: the error names the record, the setting and the exact command.
func TestStopErrorNamesTheSkip(t *testing.T) {
	err := &StopError{Stage: "compliance", Record: Position{"walhook.snapshots.x", 1, 42}, Reason: errors.New("bad bytes")}
	for _, want := range []string{"walhook.snapshots.x[1]@42", "bad bytes", "compliance.on_poison", "walhook dlq skip --stage compliance --topic walhook.snapshots.x --partition 1 --offset 42"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
}
