package avro

import (
	"encoding/json"
	"math"
	"strconv"
	"time"
)

// Typed values of decoded rows beyond Go's built-in ones.

// Date is a civil date: days since 1970-01-01. PostgreSQL's infinities are
// math.MaxInt32 and math.MinInt32.
type Date int32

// Time returns midnight UTC of d.
func (d Date) Time() time.Time { return time.Unix(int64(d)*86400, 0).UTC() }

// IsInfinite reports PostgreSQL's 'infinity' and '-infinity'.
func (d Date) IsInfinite() bool { return d == math.MaxInt32 || d == math.MinInt32 }

// String is "2006-01-02", or "infinity"/"-infinity".
func (d Date) String() string {
	switch d {
	case math.MaxInt32:
		return "infinity"
	case math.MinInt32:
		return "-infinity"
	}
	return d.Time().Format(time.DateOnly)
}

// MarshalText makes JSON encode a Date as its string.
func (d Date) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// TimeOfDay is a time without time zone: microseconds since midnight
// (86,400,000,000 for PostgreSQL's 24:00:00).
type TimeOfDay int64

// String is "15:04:05.000000".
func (t TimeOfDay) String() string {
	us := int64(t)
	s := us / 1e6
	return pad2(s/3600) + ":" + pad2(s/60%60) + ":" + pad2(s%60) + "." + strconv.FormatInt(1e6+us%1e6, 10)[1:]
}

func pad2(v int64) string { return strconv.FormatInt(100+v, 10)[1:] }

// MarshalText makes JSON encode a TimeOfDay as its string.
func (t TimeOfDay) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// Decimal is an exact decimal number as text ("12.50", "-0.05"; "NaN" only
// from an unconstrained numeric column).
type Decimal string

// JSON is the text of a json or jsonb value. It marshals as itself.
type JSON []byte

// MarshalJSON embeds the value verbatim.
func (j JSON) MarshalJSON() ([]byte, error) {
	if len(j) == 0 {
		return []byte("null"), nil
	}
	return j, nil
}

var _ json.Marshaler = JSON(nil)

// IsInfiniteTime reports the timestamps PostgreSQL's 'infinity' and
// '-infinity' decode to (the int64 extremes of Unix microseconds).
func IsInfiniteTime(t time.Time) bool {
	us := t.UnixMicro()
	return us == math.MaxInt64 || us == math.MinInt64
}

// Row is one decoded row image: column names (PostgreSQL's, unescaped) and
// typed values, in column order.
type Row struct {
	Columns []string
	Values  []any
}

// Get returns the value of column name and whether the row has it.
func (r Row) Get(name string) (any, bool) {
	for i, c := range r.Columns {
		if c == name {
			return r.Values[i], true
		}
	}
	return nil, false
}

// Change is one decoded change record.
type Change struct {
	Table      string
	Op         Op
	CommitLSN  uint64
	Xid        uint32
	CommitTime time.Time
	Index      int64
	Before     *Row     // nil when absent
	After      *Row     // nil when absent
	Unchanged  []string // columns whose values were unchanged TOAST (null in After)
}
