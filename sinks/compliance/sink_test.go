package compliance_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/walhook/walhook/avro"

	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/sinks/compliance"
)

func TestSeedStoryLandsOnBothTopics(t *testing.T) {
	h := newHarness(t, demo.ModelYAML)
	h.cfg.Compliance.Log.KeepColumns = []string{"tenant_id"}
	h.produce(seed(1, nil), seed(2, nil))
	h.run()

	for _, topic := range []string{h.logTopic(), h.latestTopic()} {
		got := h.consume(topic, 2)
		if len(got) != 2 {
			t.Fatalf("%s: %d records, want 2", topic, len(got))
		}
		for i, d := range got {
			want := int64(i + 1)
			if d.key != "134" || d.value["version"] != want || d.value["key"] != "134" || d.value["tenant"] != "tenant-a" {
				t.Fatalf("%s record %d: key %q version %v tenant %v; want key 134 version %d tenant-a", topic, i, d.key, d.value["version"], d.value["tenant"], want)
			}
		}
		v1, v2 := got[0].value, got[1].value
		if v1["event_type"] != "incident_instance_created" || v2["event_type"] != "incident_instance_updated" {
			t.Fatalf("%s: event types %v, %v", topic, v1["event_type"], v2["event_type"])
		}
		if tl := field(v1, "snapshot", "timeline").([]any); len(tl) != 0 {
			t.Fatalf("%s v1 timeline %v, want empty", topic, tl)
		}
		tl := field(v2, "snapshot", "timeline").([]any)
		if len(tl) != 1 || field(tl[0].(map[string]any), "action") != "ESCALATED" || field(tl[0].(map[string]any), "created_by") != int32(0) {
			t.Fatalf("%s v2 timeline %v", topic, tl)
		}
		if got := field(v2, "snapshot", "status"); got != "RESOLVED" {
			t.Fatalf("%s v2 status %v", topic, got)
		}
		if got := field(v2, "snapshot", "session", "uuid"); got != "019c22ef-edc6-765d-9ab3-c2acf41b5253" {
			t.Fatalf("%s v2 session.uuid %v", topic, got)
		}
		if got := field(v2, "snapshot", "session", "score"); got != int32(85) {
			t.Fatalf("%s v2 session.score %#v", topic, got)
		}
		end, ok := field(v2, "snapshot", "end_time").(time.Time)
		if !ok || !end.Equal(time.Date(2026, 2, 3, 11, 15, 0, 0, time.UTC)) {
			t.Fatalf("%s v2 end_time %#v, want 2026-02-03T11:15:00Z as timestamp-millis", topic, field(v2, "snapshot", "end_time"))
		}
		if ct, ok := v2["commit_time"].(time.Time); !ok || ct.UnixMilli() != time.Date(2026, 2, 3, 11, 15, 0, 0, time.UTC).UnixMilli() {
			t.Fatalf("%s commit_time %#v", topic, v2["commit_time"])
		}
		_, hasTenant := field(v2, "snapshot").(map[string]any)["tenant_id"]
		if hasTenant != (topic == h.logTopic()) {
			t.Fatalf("%s: snapshot has tenant_id %v; only the log topic keeps it", topic, hasTenant)
		}
		if hasTenant && field(v2, "snapshot", "tenant_id") != "tenant-a" {
			t.Fatalf("%s: kept tenant_id %v", topic, field(v2, "snapshot", "tenant_id"))
		}
	}
	for _, subject := range []string{compliance.Subject(h.logTopic()), compliance.Subject(h.latestTopic())} {
		res := h.sr.Compatibility(context.Background(), subject)
		if res[0].Err != nil || res[0].Level.String() != "BACKWARD" {
			t.Fatalf("subject %s compatibility %v (%v), want BACKWARD", subject, res[0].Level, res[0].Err)
		}
	}
	checkPolicies(t, h)
}

func checkPolicies(t *testing.T, h *harness) {
	t.Helper()
	rcs, err := kadm.NewClient(h.prod).DescribeTopicConfigs(context.Background(), h.logTopic(), h.latestTopic())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		h.logTopic():    {"cleanup.policy": "delete", "retention.ms": "-1"},
		h.latestTopic(): {"cleanup.policy": "compact"},
	}
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if w, ok := want[rc.Name][c.Key]; ok && c.MaybeValue() != w {
				t.Errorf("%s %s=%q, want %q", rc.Name, c.Key, c.MaybeValue(), w)
			}
		}
	}
}

func TestWrongPolicyIsReportedAtStart(t *testing.T) {
	h := newHarness(t, demo.ModelYAML)
	adm := kadm.NewClient(h.prod)
	compact := "compact"
	if _, err := adm.CreateTopic(context.Background(), 1, -1, map[string]*string{"cleanup.policy": &compact}, h.logTopic()); err != nil {
		t.Fatal(err)
	}
	stop, done := h.run()
	select {
	case <-done:
		if err := stop(); err == nil || !containsAll(err.Error(), h.logTopic(), "cleanup.policy") {
			t.Fatalf("Run: %v; want an error naming %s and its cleanup.policy", err, h.logTopic())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not report the compacted log topic")
	}
}

func TestAddColumnMidStreamEvolvesSchema(t *testing.T) {
	h := newHarness(t, demo.ModelYAML)
	h.produce(seed(1, nil), seed(2, nil))
	h.run()
	before := h.consume(h.logTopic(), 2)

	execSQL(t, h.pgURL, "ALTER TABLE incident.instance ADD COLUMN priority integer")
	h.produce(seed(3, map[string]any{"priority": 7}))

	for _, topic := range []string{h.logTopic(), h.latestTopic()} {
		got := h.consume(topic, 3)
		if got[2].schemaID == got[0].schemaID {
			t.Fatalf("%s: v3 written with the old schema id %d", topic, got[0].schemaID)
		}
		if p := field(got[2].value, "snapshot", "priority"); p != int32(7) {
			t.Fatalf("%s v3 priority %#v, want 7", topic, p)
		}
		if _, ok := field(got[0].value, "snapshot").(map[string]any)["priority"]; ok {
			t.Fatalf("%s v1 decoded with a priority field", topic)
		}
		versions, err := h.sr.SubjectVersions(context.Background(), compliance.Subject(topic))
		if err != nil || len(versions) != 2 {
			t.Fatalf("%s: subject versions %v (%v), want 2", topic, versions, err)
		}
	}
	if before[0].schemaID == 0 {
		t.Fatal("no schema id")
	}
}

func TestIncompatibleChangeIsRefusedBeforeWriting(t *testing.T) {
	h := newHarness(t, demo.ModelYAML)
	h.produce(seed(1, nil))
	stop, done := h.run()
	h.consume(h.logTopic(), 1)

	execSQL(t, h.pgURL, "ALTER TABLE incident.instance ADD COLUMN reviewer text NOT NULL DEFAULT 'nobody'")
	h.produce(seed(2, map[string]any{"reviewer": "nobody"}))
	select {
	case <-done:
		if err := stop(); !errors.Is(err, compliance.ErrIncompatible) || !containsAll(err.Error(), "reviewer", compliance.Subject(h.logTopic())) {
			t.Fatalf("Run: %v; want ErrIncompatible naming the column and the subject", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not refuse the NOT NULL column")
	}
	for _, topic := range []string{h.logTopic(), h.latestTopic()} {
		if n := h.committed(topic, 2*time.Second); n != 1 {
			t.Fatalf("%s holds %d committed records after the refusal, want 1 (v1 only)", topic, n)
		}
	}
}

func TestTombstoneAfterDeleted(t *testing.T) {
	h := newHarness(t, demo.ModelYAML)
	h.cfg.Compliance.TombstoneDeleted = true
	del := seed(2, nil)
	del.Verb, del.EventType = avro.VerbDeleted, "incident_instance_deleted"
	h.produce(seed(1, nil), del)
	h.run()
	got := h.consume(h.latestTopic(), 3)
	if got[1].value["verb"] != "deleted" || got[2].value != nil || got[2].key != "134" {
		t.Fatalf("latest topic: %v / %v; want the deleted version then a tombstone for 134", got[1].value, got[2].value)
	}
	if log := h.consume(h.logTopic(), 2); len(log) != 2 {
		t.Fatalf("log topic has %d records", len(log))
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
