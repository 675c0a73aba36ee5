package pipeline

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
)

// TestAppendStateMatchesMarshal: the hand-written state encoding is the same JSON value as
// json.Marshal's, for states that set every field, and the same bytes where no string needs HTML
// escaping. It fails when rootState, row or pending gain a field encodeState does not
// write.
func TestAppendStateMatchesMarshal(t *testing.T) {
	known := map[reflect.Type][]string{
		reflect.TypeFor[rootState](): {"version", "applied", "root,omitempty", "gone,omitempty", "subs,omitempty", "pending,omitempty", "last,omitempty", "partial,omitempty"},
		reflect.TypeFor[row]():       {"c", "v"},
		reflect.TypeFor[pending]():   {"lsn", "created,omitempty", "hard_deleted,omitempty", "was_soft_deleted,omitempty", "existed,omitempty"},
	}
	for typ, want := range known {
		var tags []string
		for f := range typ.Fields() {
			tags = append(tags, f.Tag.Get("json"))
		}
		if !slices.Equal(tags, want) {
			t.Fatalf("%s has the JSON fields %q; encodeState (state.go) writes %q: add the new field there and here", typ, tags, want)
		}
	}

	full := sampleState(t)
	full.Gone, full.Partial = true, true
	full.Pending = &pending{LSN: 0x2000, Created: true, HardDeleted: true, WasSoftDeleted: true, Existed: true}
	full.Last = json.RawMessage(`{"id":"1","a":[1,2]}`)
	full.Subs["incident.attachment"] = map[string]*row{"b": {Cols: []string{"id", "note"}, Vals: []json.RawMessage{quote("b"), quote(`"quoted" <tag> é`)}}, "a": nil}
	full.Subs["incident.empty"] = nil
	for name, st := range map[string]*rootState{"empty": {}, "sample": sampleState(t), "every field": full,
		"nil value": {Root: &row{Cols: []string{"id"}, Vals: []json.RawMessage{nil}}}} {
		t.Run(name, func(t *testing.T) {
			got, err := encodeState(st)
			if err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(st)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(got) {
				t.Fatalf("not JSON: %s", got)
			}
			if _, err := decodeState(got); err != nil {
				t.Fatal(err)
			}
			// Compared as JSON values: json.Marshal HTML-escapes inside row values ("<" as
			// \u003c), which encodeState leaves as rendered.
			var a, b any
			if err := json.Unmarshal(got, &a); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(want, &b); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("encoded\n%s\nwant the same value as json.Marshal's\n%s", got, want)
			}
			if name != "every field" && !bytes.Equal(got, want) {
				t.Fatalf("encoded\n%s\nwant (json.Marshal)\n%s", got, want)
			}
		})
	}
	// A value keeps its text through the store: a payload built from a state read back shows
	// "<tag>" as the fresh one does (json.Marshal wrote it back as "\u003ctag\u003e").
	enc, err := encodeState(full)
	if err != nil {
		t.Fatal(err)
	}
	back, err := decodeState(enc)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(back.Subs["incident.attachment"]["b"].Vals[1]), string(quote(`"quoted" <tag> é`)); got != want {
		t.Fatalf("a value read back is %s, rendered %s", got, want)
	}
	if _, err := encodeState(&rootState{Root: &row{Cols: []string{"id"}, Vals: []json.RawMessage{{}}}}); err == nil {
		t.Fatal("a row value that is empty (not JSON) encoded without an error")
	}
}
