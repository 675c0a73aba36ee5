package webhook_test

import (
	"encoding/json"
	"testing"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/sinks/webhook"
)

// A thin event is JSON naming the event, the root and the version, with the explicit marker and
// the sizes, whatever characters the root key has.
func TestThinBody(t *testing.T) {
	snap := &avro.Snapshot{EventType: "incident_instance_updated", Key: `k"1\` + "\n", Version: 7}
	var got map[string]any
	if err := json.Unmarshal(webhook.ThinBody(snap, 20<<20, 1<<20), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"event_type": "incident_instance_updated", "root_key": snap.Key, "version": 7.0,
		"payload_omitted": "size", "payload_bytes": float64(20 << 20), "max_payload_bytes": float64(1 << 20)}
	if len(got) != len(want) {
		t.Fatalf("thin event %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}
