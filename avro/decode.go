package avro

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
)

// ChangeDecoder decodes the change records of one writer schema. Compile
// it once per schema (NewChangeDecoder) and reuse it; it is immutable and
// safe for concurrent use.
type ChangeDecoder struct {
	name   string // record full name, for errors
	fields []topField
	row    []rowField
	ops    []Op // enum index → Op
}

type topField uint8

const (
	fOp topField = iota
	fTable
	fCommitLSN
	fXid
	fCommitTime
	fIndex
	fBefore
	fAfter
	fUnchanged
)

var topFieldNames = map[string]topField{
	"op": fOp, "table": fTable, "commit_lsn": fCommitLSN, "xid": fXid, "commit_time": fCommitTime,
	"index": fIndex, "before": fBefore, "after": fAfter, "unchanged": fUnchanged,
}

// rowField is one Row field: the PostgreSQL column name and how to read it.
type rowField struct {
	name string
	dec  colType // kind (and scale, elem) recovered from the schema
}

// schemaNode is the subset of Avro schema JSON the decoder reads.
type schemaNode struct {
	Type        json.RawMessage `json:"type"`
	Name        string          `json:"name"`
	Namespace   string          `json:"namespace"`
	Fields      []schemaField   `json:"fields"`
	Symbols     []string        `json:"symbols"`
	Items       json.RawMessage `json:"items"`
	LogicalType string          `json:"logicalType"`
	Scale       int             `json:"scale"`
}

type schemaField struct {
	Name   string          `json:"name"`
	Type   json.RawMessage `json:"type"`
	PgType string          `json:"pg.type"`
	PgName string          `json:"pg.name"`
}

// NewChangeDecoder compiles the writer schema of change records (as
// NewChangeSchema writes them) into a decoder.
func NewChangeDecoder(schemaJSON string) (*ChangeDecoder, error) {
	var root schemaNode
	if err := json.Unmarshal([]byte(schemaJSON), &root); err != nil {
		return nil, fmt.Errorf("avro: change schema is not JSON: %w", err)
	}
	d := &ChangeDecoder{name: root.Name}
	if root.Namespace != "" {
		d.name = root.Namespace + "." + root.Name
	}
	for _, f := range root.Fields {
		if err := d.compileTop(f); err != nil {
			return nil, fmt.Errorf("avro: change schema %s field %s: %w", d.name, f.Name, err)
		}
	}
	if len(d.fields) != len(topFieldNames) || d.row == nil {
		return nil, fmt.Errorf("avro: schema %s is not a walhook change schema (fields %d, want %d)", d.name, len(d.fields), len(topFieldNames))
	}
	return d, nil
}

func (d *ChangeDecoder) compileTop(f schemaField) error {
	tf, ok := topFieldNames[f.Name]
	if !ok {
		return fmt.Errorf("unknown field")
	}
	d.fields = append(d.fields, tf)
	switch tf {
	case fOp:
		return d.compileOp(f.Type)
	case fBefore, fAfter:
		return d.compileRowUnion(f.Type)
	}
	return nil
}

func (d *ChangeDecoder) compileOp(raw json.RawMessage) error {
	var n schemaNode
	if err := json.Unmarshal(raw, &n); err != nil {
		return err
	}
	for _, sym := range n.Symbols {
		op := opFromSymbol(sym)
		if op == 0 {
			return fmt.Errorf("unknown op symbol %q", sym)
		}
		d.ops = append(d.ops, op)
	}
	return nil
}

func opFromSymbol(sym string) Op {
	for i, s := range opSymbols {
		if s == sym {
			return Op(i + 1)
		}
	}
	return 0
}

// compileRowUnion reads ["null", Row]; the Row record is defined at its
// first use and referenced by name afterwards.
func (d *ChangeDecoder) compileRowUnion(raw json.RawMessage) error {
	var branches []json.RawMessage
	if err := json.Unmarshal(raw, &branches); err != nil || len(branches) != 2 || string(branches[0]) != `"null"` {
		return fmt.Errorf(`want ["null", Row], got %s`, raw)
	}
	if branches[1][0] == '"' {
		return nil // a reference to the Row defined earlier
	}
	var row schemaNode
	if err := json.Unmarshal(branches[1], &row); err != nil {
		return err
	}
	d.row = make([]rowField, 0, len(row.Fields))
	for _, f := range row.Fields {
		rf, err := compileRowField(f)
		if err != nil {
			return fmt.Errorf("row field %s: %w", f.Name, err)
		}
		d.row = append(d.row, rf)
	}
	return nil
}

func compileRowField(f schemaField) (rowField, error) {
	name := f.Name
	if f.PgName != "" {
		name = f.PgName
	}
	t, err := compileNullable(f.Type, f.PgType)
	return rowField{name: name, dec: t}, err
}

// compileNullable reads a ["null", T] union.
func compileNullable(raw json.RawMessage, pgType string) (colType, error) {
	var branches []json.RawMessage
	if err := json.Unmarshal(raw, &branches); err != nil || len(branches) != 2 || string(branches[0]) != `"null"` {
		return colType{}, fmt.Errorf(`want ["null", T], got %s`, raw)
	}
	return compileType(branches[1], pgType)
}

// compileType maps an Avro type back to a kind; pg.type separates JSON and
// numeric text from plain strings.
func compileType(raw json.RawMessage, pgType string) (colType, error) {
	var n schemaNode
	if raw[0] == '"' {
		n.Type = raw
	} else if err := json.Unmarshal(raw, &n); err != nil {
		return colType{}, err
	}
	var typ string
	if err := json.Unmarshal(n.Type, &typ); err != nil {
		return colType{}, fmt.Errorf("unsupported type %s", raw)
	}
	t := colType{pgType: pgType, scale: n.Scale}
	switch typ + "/" + n.LogicalType {
	case "int/":
		t.kind = kInt
	case "int/date":
		t.kind = kDate
	case "long/":
		t.kind = kLong
	case "long/timestamp-micros":
		t.kind = kTimestampTZ
	case "long/local-timestamp-micros":
		t.kind = kTimestamp
	case "long/time-micros":
		t.kind = kTime
	case "float/":
		t.kind = kFloat
	case "double/":
		t.kind = kDouble
	case "boolean/":
		t.kind = kBool
	case "bytes/":
		t.kind = kBytes
	case "bytes/decimal":
		t.kind = kDecimal
	case "string/", "string/uuid":
		t.kind = stringKind(pgType)
	case "array/":
		elem, err := compileNullable(n.Items, strings.TrimPrefix(pgType, "_"))
		if err != nil {
			return colType{}, fmt.Errorf("array items: %w", err)
		}
		t.kind, t.elem = kArray, &elem
	default:
		return colType{}, fmt.Errorf("unsupported type %s", raw)
	}
	return t, nil
}

func stringKind(pgType string) kind {
	switch pgType {
	case "json", "jsonb":
		return kJSON
	case "numeric":
		return kNumericText
	}
	return kString
}

// DecodeChange compiles schemaJSON and decodes body. Callers decoding many
// records should keep a ChangeDecoder per schema instead.
func DecodeChange(schemaJSON string, body []byte) (*Change, error) {
	d, err := NewChangeDecoder(schemaJSON)
	if err != nil {
		return nil, err
	}
	return d.Decode(body)
}

// Decode decodes one change body. Errors wrap ErrTruncated or ErrCorrupt
// and name the record and byte offset.
func (d *ChangeDecoder) Decode(body []byte) (*Change, error) { return d.decode(reader{buf: body}) }

// SharedTextMin is the length from which DecodeShared's text values alias the body.
const SharedTextMin = 64 << 10

// DecodeShared decodes like Decode, except that text values of SharedTextMin bytes or more are
// strings over body's bytes instead of copies: for a caller that renders each value at once and
// keeps nothing of the Change (the bubble-up stage), a large value is not copied one more time.
// body must not change while the Change is in use.
func (d *ChangeDecoder) DecodeShared(body []byte) (*Change, error) {
	return d.decode(reader{buf: body, shareText: SharedTextMin})
}

func (d *ChangeDecoder) decode(r reader) (*Change, error) {
	c := &Change{}
	for _, f := range d.fields {
		d.decodeTop(&r, f, c)
	}
	if err := r.finish(); err != nil {
		return nil, fmt.Errorf("avro: decoding %s: %w", d.name, err)
	}
	return c, nil
}

func (d *ChangeDecoder) decodeTop(r *reader, f topField, c *Change) {
	switch f {
	case fOp:
		i := r.long()
		if i < 0 || i >= int64(len(d.ops)) {
			r.fail(ErrCorrupt)
			return
		}
		c.Op = d.ops[i]
	case fTable:
		c.Table = r.string()
	case fCommitLSN:
		c.CommitLSN = uint64(r.long())
	case fXid:
		c.Xid = uint32(r.long())
	case fCommitTime:
		c.CommitTime = microsToTime(r.long())
	case fIndex:
		c.Index = r.long()
	case fBefore:
		c.Before = d.decodeRow(r)
	case fAfter:
		c.After = d.decodeRow(r)
	case fUnchanged:
		c.Unchanged = decodeStrings(r)
	}
}

func (d *ChangeDecoder) decodeRow(r *reader) *Row {
	if !unionPresent(r) {
		return nil
	}
	row := &Row{Columns: make([]string, len(d.row)), Values: make([]any, len(d.row))}
	for i := range d.row {
		row.Columns[i] = d.row[i].name
		row.Values[i] = decodeNullable(r, &d.row[i].dec)
	}
	return row
}

// unionPresent reads the index of a ["null", T] union.
func unionPresent(r *reader) bool {
	switch r.long() {
	case 0:
		return false
	case 1:
		return true
	}
	r.fail(ErrCorrupt)
	return false
}

func decodeNullable(r *reader, t *colType) any {
	if !unionPresent(r) {
		return nil
	}
	return decodeValue(r, t)
}

func decodeValue(r *reader, t *colType) any {
	switch t.kind {
	case kInt:
		return r.int()
	case kLong:
		return r.long()
	case kFloat:
		return r.float()
	case kDouble:
		return r.double()
	case kBool:
		return r.boolean()
	case kDecimal:
		return decimalText(r.bytes(), t.scale)
	case kTimestampTZ, kTimestamp:
		return microsToTime(r.long())
	case kDate:
		return Date(r.int())
	case kTime:
		return TimeOfDay(r.long())
	case kBytes:
		return append([]byte(nil), r.bytes()...)
	case kJSON:
		return JSON(append([]byte(nil), r.bytes()...))
	case kNumericText:
		return Decimal(r.string())
	case kArray:
		return decodeArray(r, t.elem)
	default:
		return r.text()
	}
}

func decodeArray(r *reader, elem *colType) []any {
	out := []any{}
	for n := r.blockCount(); n > 0 && r.err == nil; n = r.blockCount() {
		for range n {
			out = append(out, decodeNullable(r, elem))
		}
	}
	return out
}

func decodeStrings(r *reader) []string {
	var out []string
	for n := r.blockCount(); n > 0 && r.err == nil; n = r.blockCount() {
		for range n {
			out = append(out, r.string())
		}
	}
	return out
}

// decimalText formats an unscaled two's complement value with scale digits
// after the point: (1250, 2) → "12.50".
func decimalText(b []byte, scale int) Decimal {
	if b == nil {
		return ""
	}
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(len(b))*8))
	}
	digits := n.String()
	neg := strings.HasPrefix(digits, "-")
	digits = strings.TrimPrefix(digits, "-")
	if scale > 0 {
		if len(digits) <= scale {
			digits = strings.Repeat("0", scale-len(digits)+1) + digits
		}
		digits = digits[:len(digits)-scale] + "." + digits[len(digits)-scale:]
	}
	if neg {
		digits = "-" + digits
	}
	return Decimal(digits)
}
