package main

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/walhook/walhook/avro"
)

// TestAvroJSONPlainValues encodes a change record with every kind of column the CDC stage
// writes and checks `walhook tail`'s rendering of it: unions as their value, text times, exact
// decimals, embedded JSON, PostgreSQL's column names.
func TestAvroJSONPlainValues(t *testing.T) {
	col := func(name, typ string) avro.Column {
		return avro.Column{Name: name, TypeName: typ, TypeMod: -1, Nullable: true}
	}
	id := col("id", "int8")
	id.Key, id.Nullable = true, false
	money := col("amount", "numeric")
	money.TypeMod = (10<<16 | 2) + 4 // numeric(10,2)
	status := col("status", "incident_status")
	status.IsEnum = true
	arr := col("ranks", "_int4")
	arr.ElemTypeName = "int4"
	table := avro.Table{Schema: "s", Name: "t", Columns: []avro.Column{
		id, money, col("ratio", "numeric"), col("score", "float8"), col("ok", "bool"), col("at", "timestamptz"),
		col("forever", "timestamptz"), col("local", "timestamp"), col("day", "date"), col("clock", "time"), col("ref", "uuid"),
		col("doc", "jsonb"), col("raw", "bytea"), arr, status, col("weird-name", "text"), col("gone", "text"),
	}}
	s, err := avro.NewChangeSchema(table)
	if err != nil {
		t.Fatal(err)
	}
	text := func(v string) avro.Cell { return avro.Cell{Kind: avro.CellText, Data: []byte(v)} }
	after := []avro.Cell{text("7"), text("12.50"), text("3.14159"), text("NaN"), text("t"), text("2026-02-03 10:46:23.26+00"),
		text("infinity"), text("2026-02-03 10:00:00.5"), text("2026-02-03"), text("10:11:12.000013"),
		text("5d92b0af-9ac0-4fd4-9d36-4cd0b53294c5"), text(`{"a": [1, 2]}`), text(`\x0102`), text("{1,NULL,3}"),
		text("TRIGGERED"), text("x"), {Kind: avro.CellNull}}
	body, err := s.AppendChange(nil, avro.ChangeHeader{Op: avro.OpCreate, CommitLSN: 42, Xid: 9,
		CommitTime: time.Date(2026, 2, 3, 10, 46, 23, 123456000, time.UTC)}, nil, after)
	if err != nil {
		t.Fatal(err)
	}
	got, err := newAvroJSON().decode(s.JSON(), body)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"op":"create","table":"s.t","commit_lsn":42,"xid":9,"commit_time":"2026-02-03T10:46:23.123456Z","index":0,
		"before":null,"after":{"id":7,"amount":"12.50","ratio":"3.14159","score":"NaN","ok":true,"at":"2026-02-03T10:46:23.260000Z",
		"forever":"infinity","local":"2026-02-03T10:00:00.500000","day":"2026-02-03","clock":"10:11:12.000013",
		"ref":"5d92b0af-9ac0-4fd4-9d36-4cd0b53294c5","doc":{"a":[1,2]},"raw":"AQI=","ranks":[1,null,3],"status":"TRIGGERED",
		"weird-name":"x","gone":null},"unchanged":[]}`
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if _, err := newAvroJSON().decode(s.JSON(), body[:len(body)-3]); err == nil {
		t.Error("a truncated body decoded")
	}
}

func TestDecimalString(t *testing.T) {
	for _, tc := range []struct {
		b     []byte
		scale int
		want  string
	}{
		{[]byte{0x04, 0xE2}, 2, "12.50"},
		{[]byte{0xFB, 0x1E}, 2, "-12.50"},
		{[]byte{0x05}, 3, "0.005"},
		{[]byte{0xFF}, 1, "-0.1"},
		{[]byte{0x2A}, 0, "42"},
	} {
		if got := decimalString(tc.b, tc.scale); got != tc.want {
			t.Errorf("decimalString(%x, %d) = %s, want %s", tc.b, tc.scale, got, tc.want)
		}
	}
}
