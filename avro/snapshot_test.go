package avro

import (
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
)

func TestSnapshotRoundTrip(t *testing.T) {
	s := Snapshot{RootType: "incident.instance", EventPrefix: "incident.instance", Key: "134", Tenant: "acme",
		EventType: "incident_instance_updated", Verb: VerbUpdated, Version: 2, CommitLSN: 0x16B374D848,
		CommitTime: time.Date(2026, 2, 3, 11, 15, 0, 123456000, time.UTC), Payload: []byte(`{"id":134}`)}
	body := AppendSnapshot(nil, s)
	got, err := DecodeSnapshot(body)
	if err != nil {
		t.Fatal(err)
	}
	if got.Key != s.Key || got.Verb != s.Verb || got.Version != 2 || got.CommitLSN != s.CommitLSN ||
		!got.CommitTime.Equal(s.CommitTime) || string(got.Payload) != string(s.Payload) || got.Tenant != "acme" {
		t.Fatalf("round trip: %+v", got)
	}
	// An independent implementation reads the same bytes with the published schema.
	codec, err := goavro.NewCodec(SnapshotSchema())
	if err != nil {
		t.Fatal(err)
	}
	native, _, err := codec.NativeFromBinary(body)
	if err != nil {
		t.Fatal(err)
	}
	m := native.(map[string]any)
	if m["verb"] != "updated" || m["payload"] != `{"id":134}` || m["version"] != int64(2) {
		t.Fatalf("goavro read %v", m)
	}
	if _, err := DecodeSnapshot(body[:len(body)-3]); err == nil {
		t.Fatal("truncated body decoded")
	}
}
