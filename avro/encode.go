package avro

import (
	"fmt"
)

// ValueError reports a text cell that does not parse as its column's type.
type ValueError struct {
	Table  string // "incident.instance"
	Column string
	Type   string // pg_type.typname
	Value  string // truncated to maxErrValue bytes
	Err    error  // the reason
}

const maxErrValue = 64

func (e *ValueError) Error() string {
	return fmt.Sprintf("avro: table %s column %s (%s): cannot encode %q: %v", e.Table, e.Column, e.Type, e.Value, e.Err)
}

func (e *ValueError) Unwrap() error { return e.Err }

func (s *ChangeSchema) valueError(col int, v []byte, err error) error {
	if len(v) > maxErrValue {
		v = append(v[:maxErrValue:maxErrValue], "…"...)
	}
	c := s.table.Columns[col]
	return &ValueError{Table: s.fullTable, Column: c.Name, Type: c.TypeName, Value: string(v), Err: err}
}

// AppendChange appends the Avro binary body (no framing) of one change.
// before/after are nil when absent (insert has no before; delete has no
// after; update has before only with REPLICA IDENTITY FULL or a key change).
// Each non-nil slice has one cell per column. A text cell that does not
// parse as its column type is a *ValueError naming table, column, type and
// the (truncated) value. On error dst is returned with its original length.
// It does not allocate when dst has room.
func (s *ChangeSchema) AppendChange(dst []byte, h ChangeHeader, before, after []Cell) ([]byte, error) {
	start := len(dst)
	if !h.Op.valid() {
		return dst, fmt.Errorf("avro: table %s: invalid op %d", s.fullTable, h.Op)
	}
	dst = appendInt(dst, int32(h.Op-1))
	dst = appendString(dst, s.fullTable)
	dst = appendLong(dst, int64(h.CommitLSN))
	dst = appendLong(dst, int64(h.Xid))
	dst = appendLong(dst, h.CommitTime.UnixMicro())
	dst = appendLong(dst, h.Index)
	var err error
	if dst, err = s.appendRow(dst, before, "before"); err != nil {
		return dst[:start], err
	}
	if dst, err = s.appendRow(dst, after, "after"); err != nil {
		return dst[:start], err
	}
	return s.appendUnchanged(dst, after), nil
}

// appendRow writes the ["null", Row] union of one tuple.
func (s *ChangeSchema) appendRow(dst []byte, cells []Cell, which string) ([]byte, error) {
	if cells == nil {
		return append(dst, 0), nil
	}
	if len(cells) != len(s.cols) {
		return dst, fmt.Errorf("avro: table %s: %s image has %d columns, schema has %d; the relation changed without a new schema",
			s.fullTable, which, len(cells), len(s.cols))
	}
	dst = append(dst, 2)
	for i := range cells {
		c := &cells[i]
		if c.Kind != CellText {
			dst = append(dst, 0) // null and unchanged TOAST are both absent values
			continue
		}
		var err error
		if dst, err = appendValue(append(dst, 2), c.Data, &s.cols[i]); err != nil {
			return dst, s.valueError(i, c.Data, err)
		}
	}
	return dst, nil
}

// appendUnchanged writes the names of the after image's unchanged TOAST
// columns as one Avro array block.
func (s *ChangeSchema) appendUnchanged(dst []byte, after []Cell) []byte {
	n := 0
	for i := range after {
		if after[i].Kind == CellUnchanged {
			n++
		}
	}
	if n == 0 {
		return append(dst, 0)
	}
	dst = appendLong(dst, int64(n))
	for i := range after {
		if after[i].Kind == CellUnchanged {
			dst = appendString(dst, s.table.Columns[i].Name)
		}
	}
	return append(dst, 0)
}
