package avro

import (
	"math/big"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
)

// fuzzColumns is one column of every encoding the text parsers know.
func fuzzColumns() []Column {
	return []Column{
		col("i", "int4"), col("l", "int8"), col("f", "float4"), col("d", "float8"), col("b", "bool"),
		numericCol("n", 10, 2), numericCol("w", 40, 5), col("nt", "numeric"),
		col("tz", "timestamptz"), col("ts", "timestamp"), col("dt", "date"), col("tm", "time"),
		col("u", "uuid"), col("j", "jsonb"), col("by", "bytea"), col("s", "text"),
		arrayCol("ai", "int4"), arrayCol("as", "text"), arrayCol("at", "timestamptz"), arrayCol("an", "numeric"),
	}
}

// FuzzParsers feeds one text to every column type: parsing must never
// panic, and whatever encodes must decode, with our decoder and goavro.
func FuzzParsers(f *testing.F) {
	for _, tc := range valueCases() {
		f.Add(tc.text)
	}
	for _, s := range []string{"{", "}", `{"`, `{\}`, "[1:2]", "-", "+", "1e400", "99999999999999999999", "2026-02-03 10:46:23.1+99:99:99"} {
		f.Add(s)
	}
	cols := fuzzColumns()
	schemas := make([]*ChangeSchema, len(cols))
	codecs := make([]*goavro.Codec, len(cols))
	decoders := make([]*ChangeDecoder, len(cols))
	for i, c := range cols {
		var err error
		if schemas[i], err = NewChangeSchema(Table{Schema: "f", Name: "t", Columns: []Column{c}}); err != nil {
			f.Fatal(err)
		}
		codecs[i], _ = goavro.NewCodec(schemas[i].JSON())
		decoders[i], _ = NewChangeDecoder(schemas[i].JSON())
	}
	f.Fuzz(func(t *testing.T, s string) {
		row := []Cell{{Kind: CellText, Data: []byte(s)}}
		for i, schema := range schemas {
			body, err := schema.AppendChange(nil, ChangeHeader{Op: OpCreate}, nil, row)
			if err != nil {
				continue
			}
			if _, err := decoders[i].Decode(body); err != nil {
				t.Errorf("%s %q: our decoder: %v", cols[i].TypeName, s, err)
			}
			if _, rest, err := codecs[i].NativeFromBinary(body); err != nil || len(rest) != 0 {
				t.Errorf("%s %q: goavro: %v", cols[i].TypeName, s, err)
			}
		}
	})
}

// FuzzDecodeChange checks the decoder survives arbitrary bodies.
func FuzzDecodeChange(f *testing.F) {
	s, _ := NewChangeSchema(Table{Schema: "f", Name: "t", Columns: fuzzColumns()})
	d, err := NewChangeDecoder(s.JSON())
	if err != nil {
		f.Fatal(err)
	}
	row := make([]Cell, len(fuzzColumns()))
	for i, tc := range []string{"1", "2", "1.5", "2.5", "t", "1.25", "3.14159", "NaN",
		"2026-02-03 10:46:23.26+00", "2026-02-03 10:46:23", "2026-02-03", "10:46:23",
		"019c22ef-edc6-765d-9ab3-c2acf41b5253", `{"a":1}`, `\x0a`, "txt", "{1,NULL}", `{"a b"}`, "{}", "{1.5,NaN}"} {
		row[i] = text(tc)
	}
	body, err := s.AppendChange(nil, ChangeHeader{Op: OpUpdate, Index: 7}, row, row)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(body)
	f.Add([]byte{})
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, body []byte) {
		d.Decode(body)
		DecodeTxnEnd(body)
		DecodeWatermark(body)
		SplitConfluent(body)
		SplitSingleObject(body)
	})
}

// TestDecimalRandom checks the decimal encoder against math/big for random
// values of every size, through goavro's independent two's complement
// decoding.
func TestDecimalRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		precision := 1 + rng.IntN(60)
		scale := rng.IntN(precision + 1)
		digits := make([]byte, 1+rng.IntN(precision))
		for i := range digits {
			digits[i] = byte('0' + rng.IntN(10))
		}
		n, _ := new(big.Int).SetString(string(digits), 10)
		if rng.IntN(2) == 0 {
			n.Neg(n)
		}
		want := new(big.Rat).SetFrac(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil)).FloatString(scale)
		c := numericCol("n", int32(precision), int32(scale))
		s, body, err := encodeOne(t, c, want)
		if err != nil {
			t.Fatalf("numeric(%d,%d) %s: %v", precision, scale, want, err)
		}
		ch, err := DecodeChange(s.JSON(), body)
		if err != nil || ch.After.Values[0] != Decimal(want) {
			t.Fatalf("numeric(%d,%d) %s: decoded %v %v", precision, scale, want, ch.After.Values[0], err)
		}
		checkGoavro(t, s, body, valueCase{col: c, text: want, want: Decimal(want)})
	}
}

// TestMaxPrecisionDecimal exercises numeric(1000, 0), the widest column.
func TestMaxPrecisionDecimal(t *testing.T) {
	digits := make([]byte, 1000)
	for i := range digits {
		digits[i] = '9'
	}
	for _, v := range []string{string(digits), "-" + string(digits)} {
		s, body, err := encodeOne(t, numericCol("n", 1000, 0), v)
		if err != nil {
			t.Fatal(err)
		}
		ch, err := DecodeChange(s.JSON(), body)
		if err != nil || ch.After.Values[0] != Decimal(v) {
			t.Fatalf("decoded %v %v", ch.After.Values[0], err)
		}
	}
}

// TestValuesDoNotAllocate encodes every valid value case into a buffer
// with room: the steady state of CDC.
func TestValuesDoNotAllocate(t *testing.T) {
	for _, tc := range valueCases() {
		s, _, _ := encodeOne(t, tc.col, tc.text)
		row := []Cell{{Kind: CellText, Data: []byte(tc.text)}}
		h := ChangeHeader{Op: OpCreate, CommitTime: time.Now()}
		dst := make([]byte, 0, 4096)
		if n := testing.AllocsPerRun(20, func() { dst, _ = s.AppendChange(dst[:0], h, nil, row) }); n != 0 {
			t.Errorf("%s %q: %v allocs", tc.col.TypeName, tc.text, n)
		}
	}
}
