package status

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	r := &Report{slotRead: true, Slot: &Slot{Name: "walhook", Exists: true, LagBytes: 2048},
		Groups:      []Group{{Stage: "webhook", Group: "walhook.webhook", Topics: []TopicLag{{Topic: "s", Lag: 7}}}},
		DeadLetters: TopicSize{Topic: "walhook.webhook.dlq", Records: 2}}
	if r.Check(NoThresholds) {
		t.Fatalf("no thresholds crossed: %v", r.Violations)
	}
	if !r.Check(Thresholds{MaxSlotLagBytes: 1024, MaxConsumerLag: 6, MaxDLQ: 1}) || len(r.Violations) != 3 {
		t.Fatalf("want 3 violations, got %v", r.Violations)
	}
	r.Slot = &Slot{Name: "walhook"}
	if !r.Check(NoThresholds) || !strings.Contains(r.Violations[0], "does not exist") {
		t.Fatalf("missing slot: %v", r.Violations)
	}
	r.slotRead = false // PostgreSQL unreachable: an error, not a missing slot
	if r.Check(NoThresholds) {
		t.Fatalf("unread slot counted as missing: %v", r.Violations)
	}
	var out bytes.Buffer
	r.CheckedAt = time.Unix(0, 0)
	if err := r.WriteText(&out); err != nil || !strings.Contains(out.String(), "slot walhook: unknown") ||
		!strings.Contains(out.String(), "inexact references: none") {
		t.Fatalf("text: %v\n%s", err, out.String())
	}
	r.InexactReferences = TopicSize{Topic: "walhook.bubbleup.inexact-references", Records: 4}
	out.Reset()
	if err := r.WriteText(&out); err != nil || !strings.Contains(out.String(), "inexact references: 4 log positions in walhook.bubbleup.inexact-references") {
		t.Fatalf("text with inexact references: %v\n%s", err, out.String())
	}
}

func TestBytesIEC(t *testing.T) {
	for n, want := range map[int64]string{512: "512 B", 2048: "2.0 KiB", 3 << 30: "3.0 GiB"} {
		if got := bytesIEC(n); got != want {
			t.Errorf("bytesIEC(%d) = %q, want %q", n, got, want)
		}
	}
}
