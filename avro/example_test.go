package avro_test

import (
	"fmt"
	"time"

	"github.com/walhook/walhook/avro"
)

func ExampleChangeSchema_AppendChange() {
	schema, err := avro.NewChangeSchema(avro.Table{Schema: "incident", Name: "timeline", Columns: []avro.Column{
		{Name: "id", TypeName: "int8", TypeMod: -1, Key: true},
		{Name: "action", TypeName: "timeline_action", TypeMod: -1, IsEnum: true, Nullable: true},
		{Name: "created_at", TypeName: "timestamptz", TypeMod: -1},
	}})
	if err != nil {
		panic(err)
	}
	after := []avro.Cell{
		{Kind: avro.CellText, Data: []byte("1")},
		{Kind: avro.CellText, Data: []byte("ESCALATED")},
		{Kind: avro.CellText, Data: []byte("2026-02-03 10:51:23.26+00")},
	}
	h := avro.ChangeHeader{Op: avro.OpCreate, CommitLSN: 0x16B3748, Xid: 771, CommitTime: time.Unix(1770115883, 0)}
	body, err := schema.AppendChange(nil, h, nil, after)
	if err != nil {
		panic(err)
	}
	change, err := avro.DecodeChange(schema.JSON(), body)
	if err != nil {
		panic(err)
	}
	action, _ := change.After.Get("action")
	created, _ := change.After.Get("created_at")
	fmt.Println(schema.Schema().FullName, change.Op, action, created.(time.Time).Format(time.RFC3339Nano))
	// Output: walhook.incident.timeline.Change create ESCALATED 2026-02-03T10:51:23.26Z
}
