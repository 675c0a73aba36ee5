package avro

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/linkedin/goavro/v2"
)

func incidentTable() Table {
	key := func(c Column) Column { c.Key, c.Nullable = true, false; return c }
	status := col("status", "incident_status")
	status.IsEnum = true
	return Table{Schema: "incident", Name: "instance", Columns: []Column{
		key(col("id", "int8")),
		col("name", "text"),
		col("description", "text"),
		status,
		col("severity", "text"),
		col("start_time", "timestamptz"),
		col("end_time", "timestamptz"),
		col("resolution_notes", "text"),
		col("session_instance_id", "int8"),
		col("external_id", "text"),
		col("is_deleted", "bool"),
		col("tenant_id", "int4"),
		col("created_at", "timestamptz"),
		col("created_by", "int4"),
		col("updated_at", "timestamptz"),
		col("updated_by", "int4"),
	}}
}

func text(s string) Cell { return Cell{Kind: CellText, Data: []byte(s)} }

func incidentRow() []Cell {
	return []Cell{
		text("134"), text("Face not detected"), {Kind: CellNull}, text("RESOLVED"), text("LOW"),
		text("2026-02-03 10:46:23.26+00"), text("2026-02-03 11:15:00+00"),
		text("Confirmed candidate was adjusting camera. No violation."), text("2523"), {Kind: CellNull},
		text("f"), text("7"), text("2026-02-03 09:57:55.341+00"), text("1"), text("2026-02-03 11:15:00+00"), text("1"),
	}
}

func TestIncidentChange(t *testing.T) {
	s, err := NewChangeSchema(incidentTable())
	if err != nil {
		t.Fatal(err)
	}
	before := make([]Cell, 16)
	before[0] = text("134") // REPLICA IDENTITY DEFAULT: key only
	after := incidentRow()
	after[7] = Cell{Kind: CellUnchanged}
	h := ChangeHeader{Op: OpUpdate, CommitLSN: 0x16B3748, Xid: 4242, CommitTime: utc("2026-02-03T11:15:00.123456Z"), Index: 3}
	body, err := s.AppendChange(nil, h, before, after)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := DecodeChange(s.JSON(), body)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Table != "incident.instance" || ch.Op != OpUpdate || ch.CommitLSN != h.CommitLSN || ch.Xid != h.Xid ||
		!ch.CommitTime.Equal(h.CommitTime) || ch.Index != 3 {
		t.Errorf("header %+v", ch)
	}
	if v, _ := ch.Before.Get("id"); v != int64(134) {
		t.Errorf("before id %v", v)
	}
	if v, ok := ch.Before.Get("name"); !ok || v != nil {
		t.Errorf("before name %v %v", v, ok)
	}
	if v, _ := ch.After.Get("status"); v != "RESOLVED" {
		t.Errorf("after status %v", v)
	}
	if v, ok := ch.After.Get("resolution_notes"); !ok || v != nil {
		t.Errorf("unchanged column decoded as %v", v)
	}
	if len(ch.Unchanged) != 1 || ch.Unchanged[0] != "resolution_notes" {
		t.Errorf("unchanged %v", ch.Unchanged)
	}
	codec, err := goavro.NewCodec(s.JSON())
	if err != nil {
		t.Fatal(err)
	}
	native, _, err := codec.NativeFromBinary(body)
	if err != nil {
		t.Fatal(err)
	}
	m := native.(map[string]any)
	if m["op"] != "update" || m["xid"] != int64(4242) || len(m["unchanged"].([]any)) != 1 {
		t.Errorf("goavro view %v", m)
	}
}

func TestOpsAndAbsentImages(t *testing.T) {
	s, _ := NewChangeSchema(incidentTable())
	for _, op := range []Op{OpCreate, OpUpdate, OpDelete, OpRead} {
		var before, after []Cell
		if op == OpDelete {
			before = incidentRow()
		} else {
			after = incidentRow()
		}
		body, err := s.AppendChange(nil, ChangeHeader{Op: op}, before, after)
		if err != nil {
			t.Fatal(err)
		}
		ch, err := DecodeChange(s.JSON(), body)
		if err != nil {
			t.Fatal(err)
		}
		if ch.Op != op || (ch.Before == nil) != (before == nil) || (ch.After == nil) != (after == nil) {
			t.Errorf("%v: %+v", op, ch)
		}
	}
	if _, err := s.AppendChange(nil, ChangeHeader{Op: 9}, nil, nil); err == nil {
		t.Error("invalid op accepted")
	}
	if _, err := s.AppendChange(nil, ChangeHeader{Op: OpCreate}, nil, incidentRow()[:3]); err == nil {
		t.Error("short row accepted")
	}
}

func TestSchemaNames(t *testing.T) {
	tbl := Table{Schema: "my-schema", Name: "2fa codes", Columns: []Column{col("user id", "int4"), col("ok", "bool"), col("ünï", "text")}}
	s, err := NewChangeSchema(tbl)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Schema().FullName; got != "walhook.my_x2dschema._x32fa_x20codes.Change" {
		t.Errorf("full name %s", got)
	}
	if !strings.Contains(s.JSON(), `"name":"user_x20id","type":["null","int"],"default":null,"pg.type":"int4","pg.name":"user id"`) {
		t.Errorf("escaped field missing: %s", s.JSON())
	}
	body, err := s.AppendChange(nil, ChangeHeader{Op: OpCreate}, nil, []Cell{text("1"), text("t"), text("x")})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := DecodeChange(s.JSON(), body)
	if err != nil {
		t.Fatal(err)
	}
	if ch.After.Columns[0] != "user id" || ch.After.Columns[2] != "ünï" {
		t.Errorf("columns %v", ch.After.Columns)
	}
	dup := Table{Schema: "s", Name: "t", Columns: []Column{col("a b", "int4"), col("a_x20b", "int4")}}
	if _, err := NewChangeSchema(dup); err == nil || !strings.Contains(err.Error(), "rename") {
		t.Errorf("duplicate escaped names: %v", err)
	}
}

func TestFingerprint(t *testing.T) {
	// Avro specification test vectors: the fingerprint of canonical "null"...
	// computed independently by goavro.
	for _, schema := range []string{`"null"`, `"int"`, TxnEndSchema(), WatermarkSchema()} {
		codec, err := goavro.NewCodec(schema)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := Fingerprint64([]byte(codec.CanonicalSchema())), uint64(codec.SchemaCRC64Avro()); got != want {
			t.Errorf("%s: fingerprint %x, goavro %x", schema, got, want)
		}
	}
	if got := Fingerprint64([]byte(`"null"`)); got != 0x63dd24e7cc258f8a {
		t.Errorf("null fingerprint %x", got)
	}
}

func TestMarkers(t *testing.T) {
	te := TxnEnd{Table: "incident.instance", RootKey: "134", CommitLSN: math.MaxUint64, Xid: math.MaxUint32, CommitTime: utc("2026-02-03T11:15:00.123456Z"), Rows: 3}
	got, err := DecodeTxnEnd(AppendTxnEnd(nil, te))
	if err != nil || got != te {
		t.Errorf("TxnEnd round trip %+v %v", got, err)
	}
	checkMarkerGoavro(t, TxnEndSchema(), AppendTxnEnd(nil, te))
	wm := Watermark{CommitLSN: 99, Time: time.UnixMicro(1).UTC()}
	gotWm, err := DecodeWatermark(AppendWatermark(nil, wm))
	if err != nil || gotWm != wm {
		t.Errorf("Watermark round trip %+v %v", gotWm, err)
	}
	checkMarkerGoavro(t, WatermarkSchema(), AppendWatermark(nil, wm))
	if _, err := DecodeTxnEnd([]byte{2, 'a'}); err == nil {
		t.Error("truncated TxnEnd accepted")
	}
	if _, err := DecodeWatermark(append(AppendWatermark(nil, wm), 0)); err == nil {
		t.Error("trailing bytes accepted")
	}
}

func checkMarkerGoavro(t *testing.T, schema string, body []byte) {
	t.Helper()
	codec, err := goavro.NewCodec(schema)
	if err != nil {
		t.Fatal(err)
	}
	if _, rest, err := codec.NativeFromBinary(body); err != nil || len(rest) != 0 {
		t.Errorf("goavro: %v, rest %d", err, len(rest))
	}
}

func TestAppendChangeAllocs(t *testing.T) {
	s, _ := NewChangeSchema(incidentTable())
	row := incidentRow()
	dst := make([]byte, 0, 1024)
	h := ChangeHeader{Op: OpCreate, CommitLSN: 1, CommitTime: time.Now()}
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		if dst, err = s.AppendChange(dst[:0], h, nil, row); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("AppendChange allocates %v times per row", allocs)
	}
}

func TestDecoderCache(t *testing.T) {
	s, _ := NewChangeSchema(incidentTable())
	body, _ := s.AppendChange(nil, ChangeHeader{Op: OpCreate}, nil, incidentRow())
	var c DecoderCache
	d1, err := c.Decoder(s.JSON())
	if err != nil {
		t.Fatal(err)
	}
	if d2, _ := c.Decoder(s.JSON()); d1 != d2 {
		t.Error("decoder compiled twice")
	}
	if ch, err := c.Decode(s.JSON(), body); err != nil || ch.Op != OpCreate {
		t.Errorf("Decode: %v", err)
	}
	if _, err := c.Decoder(`{"type":"record","name":"X","fields":[]}`); err == nil {
		t.Error("foreign schema accepted")
	}
}

// DecodeShared decodes what Decode does; its large text values are the body's bytes, small ones
// copies.
func TestDecodeSharedAliasesLargeText(t *testing.T) {
	s, _ := NewChangeSchema(incidentTable())
	after := incidentRow()
	big := strings.Repeat("d", SharedTextMin)
	after[2] = text(big)
	body, err := s.AppendChange(nil, ChangeHeader{Op: OpCreate}, nil, after)
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewChangeDecoder(s.JSON())
	if err != nil {
		t.Fatal(err)
	}
	want, err := d.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.DecodeShared(body)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("DecodeShared = %+v, %v; Decode = %+v", got, err, want)
	}
	inBody := func(s string) bool {
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		start := uintptr(unsafe.Pointer(&body[0]))
		return p >= start && p < start+uintptr(len(body))
	}
	if !inBody(got.After.Values[2].(string)) || inBody(got.After.Values[1].(string)) || inBody(want.After.Values[2].(string)) {
		t.Fatal("DecodeShared must alias the large text only, Decode nothing")
	}
}
