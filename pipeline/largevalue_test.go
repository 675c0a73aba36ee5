package pipeline

import (
	"bytes"
	"encoding/json"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"go.yaml.in/yaml/v3"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
)

// largeModel is the demo model compiled: incident.instance with its timeline and the session
// reference.
func largeModel(t testing.TB) *rootModel {
	t.Helper()
	var doc struct {
		Model config.Model `yaml:"model"`
	}
	if err := yaml.Unmarshal([]byte(demoModel), &doc); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{Model: doc.Model}
	cfg.SetDefaults()
	roots, err := compileRoots(&cfg.Model, cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	return roots[0]
}

// largeState is a root of rm with a description of size bytes and timeline rows, one of them
// soft-deleted, with text that needs escaping.
func largeState(rm *rootModel, size, rows int) *rootState {
	root := rm.root
	st := &rootState{Version: 3, Applied: 0x1234, Partial: false,
		Root: rowFrom(root, &avro.Row{
			Columns: []string{"id", "name", "description", "status", "tenant_id", "is_deleted", "session_instance_id", "start_time"},
			Values: []any{int64(1), `<b>"large"</b> ü` + "\n", strings.Repeat("x", size), "TRIGGERED", "acme", false, int64(7),
				time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)},
		}, nil, nil),
		Pending: &pending{LSN: 0x1300, Created: true, Existed: true}}
	tl := rm.tables["incident.timeline"]
	st.Subs = map[string]map[string]*row{"incident.timeline": {}}
	for i := range rows {
		st.Subs["incident.timeline"][strconv.Itoa(i)] = rowFrom(tl, &avro.Row{
			Columns: []string{"id", "incident_instance_id", "action", "description", "tenant_id"},
			Values:  []any{int64(i), int64(1), "COMMENTED", "comment\t" + strconv.Itoa(i), "acme"},
		}, nil, nil)
	}
	return st
}

// encodeState writes JSON that decodes to the state json.Marshal's encoding decodes to, and
// that decodeState reads back to the same state.
func TestStateEncodingRoundTrips(t *testing.T) {
	rm := largeModel(t)
	for _, st := range []*rootState{
		largeState(rm, 10, 3),
		largeState(rm, 64<<10, 0),
		{Version: 1, Gone: true, Root: &row{Cols: []string{"id"}, Vals: []json.RawMessage{json.RawMessage("1")}}, Last: json.RawMessage(`{"a":"<&>"}`)},
		{Partial: true, Subs: map[string]map[string]*row{"t\"x": {"k\n": nil}}},
		{},
	} {
		viaMarshal, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		want, err := decodeState(viaMarshal)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := encodeState(st.clone())
		if err != nil || !json.Valid(enc) {
			t.Fatalf("encodeState: %v, valid %v: %.300s", err, json.Valid(enc), enc)
		}
		got, err := decodeState(enc)
		if err != nil {
			t.Fatal(err)
		}
		// json.Marshal escapes "<", ">" and "&" inside the values; compare them as JSON.
		if a, b := mustMarshal(t, got), mustMarshal(t, want); !bytes.Equal(a, b) {
			t.Fatalf("encodeState decodes to\n%.500s\nwant\n%.500s", a, b)
		}
		if bytes.Contains(enc, []byte(`\u003c`)) {
			t.Fatalf("encodeState escaped HTML in a value: %.300s", enc)
		}
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// After encodeState the large value of the state is the one in the encoding (one copy of it
// for both), and the rows it had before, shared with the committed state, are unchanged.
func TestStateSharesLargeValuesWithItsEncoding(t *testing.T) {
	rm := largeModel(t)
	committed := largeState(rm, 1<<20, 2)
	before := committed.Root
	st := committed.clone()
	enc, err := encodeState(st)
	if err != nil {
		t.Fatal(err)
	}
	desc := st.Root.mustGet("description")
	if !within(desc, enc) || len(desc) != 1<<20+2 {
		t.Fatalf("the description (%d bytes) does not point into the encoding", len(desc))
	}
	if committed.Root != before || within(before.mustGet("description"), enc) {
		t.Fatal("encodeState changed a row shared with the committed state")
	}
	if small := st.Root.mustGet("status"); within(small, enc) {
		t.Fatal("a small value points into the encoding: it would keep the encoding alive for nothing")
	}
	if st.Subs["incident.timeline"]["1"] != committed.Subs["incident.timeline"]["1"] {
		t.Fatal("a row without a large value was replaced")
	}
}

func within(v, buf []byte) bool {
	if len(v) == 0 || len(buf) == 0 {
		return false
	}
	p, start := uintptr(unsafe.Pointer(&v[0])), uintptr(unsafe.Pointer(&buf[0]))
	return p >= start && p < start+uintptr(len(buf))
}

// The bound of the payload plan holds the payload, for every shape of state: the payload is
// written into one buffer allocated once.
func TestPayloadBoundHoldsThePayload(t *testing.T) {
	rm := largeModel(t)
	refs := func(j int, key string) []json.RawMessage {
		return []json.RawMessage{json.RawMessage(key), quote("uuid-" + key), json.RawMessage("9.5"), quote("OK"), quote("t"), quote("u")}
	}
	for _, st := range []*rootState{largeState(rm, 0, 0), largeState(rm, 100, 1), largeState(rm, 1<<20, 500)} {
		pb := payloadBuilder{rm: rm, refs: refs}
		pl := pb.plan(st)
		got := pb.build("1", st)
		if len(got) > pl.bound || !json.Valid(got) {
			t.Fatalf("payload of %d bytes (valid %v) above its bound %d", len(got), json.Valid(got), pl.bound)
		}
		if cap(got) != pl.bound {
			t.Fatalf("the payload buffer grew: cap %d, bound %d", cap(got), pl.bound)
		}
		prefix := []byte{0, 0, 0, 0, 42}
		snap := avro.Snapshot{RootType: "incident.instance", Key: "1", Version: 3, Verb: avro.VerbUpdated, CommitTime: time.Unix(1, 0)}
		value := pb.snapshotValue(prefix, snap, "1", st, pl)
		snap.Payload = got
		if want := avro.AppendSnapshot(append([]byte(nil), prefix...), snap); !bytes.Equal(value, want) {
			t.Fatalf("snapshotValue differs from AppendSnapshot of the built payload (%d and %d bytes)", len(value), len(want))
		}
		if d := st.Root.mustGet("description"); within(d, value) != (len(d) >= shareMin) {
			t.Fatalf("the %d-byte description points into the snapshot record: %v", len(d), within(d, value))
		}
	}
}

// A large value costs bubble-up one copy for the row (rowFrom), one for the snapshot record and
// one for the encoded state, which the state then shares (the row's copy is garbage as soon as
// the snapshot is built): at most 3.5 copies allocated in all (appending to growing buffers
// would allocate about twice each).
func TestLargeValueCopies(t *testing.T) {
	rm := largeModel(t)
	const size = 32 << 20
	refs := func(int, string) []json.RawMessage { return nil }
	big := strings.Repeat("y", size)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	start := ms.TotalAlloc
	st := &rootState{Root: rowFrom(rm.root, &avro.Row{Columns: []string{"id", "description", "tenant_id"}, Values: []any{int64(1), big, "acme"}}, nil, nil)}
	pb := payloadBuilder{rm: rm, refs: refs}
	value := pb.snapshotValue([]byte{0}, avro.Snapshot{Key: "1"}, "1", st, pb.plan(st))
	enc, err := encodeState(st)
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&ms)
	copies := float64(ms.TotalAlloc-start) / size
	t.Logf("a %d MiB value: row, snapshot record and state allocated %.2f copies of it", size>>20, copies)
	if copies > 3.5 {
		t.Fatalf("%.2f copies of a large value allocated, want at most 3.5", copies)
	}
	if len(value) < size || len(enc) < size || !within(st.Root.mustGet("description"), enc) {
		t.Fatal("the snapshot and the state do not both hold the value, or the state does not share its encoding")
	}
}
