package cdc

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const typesModel = `
model:
  roots:
    - table: public.types_t
      key: id
      soft_delete_column: "-"
`

func TestTypesRoundTrip(t *testing.T) {
	e := newEnv(t, "")
	e.exec(`CREATE TYPE mood AS ENUM ('happy', 'sad');
		CREATE TABLE public.types_t (
			id int4 PRIMARY KEY, i2 int2, i8 int8, n102 numeric(10,2), n numeric, tx text, b bool,
			tz timestamptz, ts timestamp, d date, u uuid, j json, jb jsonb, ai int4[], at text[],
			m mood, by bytea, big text)`)
	cfg := e.cfg
	cfgModel, err := parseModel(e, typesModel)
	if err != nil {
		t.Fatalf("model: %v", err)
	}
	cfg.Model = cfgModel
	r := e.start("a")
	e.waitActive()
	big := strings.Repeat("x0123456789abcdef", 1) + randomText(20000)
	e.exec(`INSERT INTO public.types_t VALUES (1, -2, 9000000000, 12345.67, 3.14159265358979, 'héllo', true,
		'2026-02-03 10:46:23.26+00', '2026-02-03 10:46:23.26', '2026-02-03', '019c22ef-edc6-765d-9ab3-c2acf41b5253',
		'{"a": 1}', '{"b": [1, 2]}', '{1,NULL,3}', '{"a b","c,d"}', 'sad', '\xdeadbeef', $1)`, big)
	e.exec(`UPDATE public.types_t SET tx = 'changed' WHERE id = 1`)
	c := e.consume(e.cfg.Kafka.ChangeTopic(e.cfg.Model.Roots[0]))
	got := c.until(30*time.Second, atLeast(2, "changes", func(rs []rec) int { return len(changes(rs, "public.types_t")) }))
	ch := changes(got, "public.types_t")
	ins, upd := ch[0].change, ch[1].change
	for col, want := range map[string]string{
		"i2": "-2", "i8": "9000000000", "n102": "12345.67", "n": "3.14159265358979", "tx": "héllo", "b": "true",
		"d": "2026-02-03", "u": "019c22ef-edc6-765d-9ab3-c2acf41b5253", "m": "sad",
	} {
		if v := val(ins.After, col); v != want {
			t.Errorf("%s = %q, want %q", col, v, want)
		}
	}
	for _, col := range []string{"tz", "ts", "j", "jb", "ai", "at", "by"} {
		v, ok := ins.After.Get(col)
		if !ok || v == nil {
			t.Errorf("%s missing: %v", col, v)
		}
		t.Logf("%s = %#v", col, v)
	}
	if v := val(ins.After, "big"); len(v) != len(big) {
		t.Errorf("big: %d bytes, want %d", len(v), len(big))
	}
	if fmt.Sprint(upd.Unchanged) != "[big]" {
		t.Errorf("update unchanged = %v, want [big]", upd.Unchanged)
	}
	if v, _ := upd.After.Get("big"); v != nil {
		t.Errorf("unchanged big sent as %v", v)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}
