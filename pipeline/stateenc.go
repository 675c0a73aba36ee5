package pipeline

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// appendState appends the JSON of s, as json.Marshal writes it (same members, same order, map
// keys sorted) but without reflection: encoding every changed root's state for the changelog was
// the largest cost of a batch. Strings are quoted without HTML escaping, which json.Unmarshal
// reads the same. Row values are written as they are: every one was rendered by jsonValue or
// read back from a state this function wrote, so each is one compact JSON value; an empty one
// (never written) is an error, as for json.Marshal.
//
// TestAppendStateMatchesMarshal fails when a field is added to rootState, row or pending
// without being added here.
func appendState(b []byte, s *rootState) ([]byte, error) {
	b = append(b, `{"version":`...)
	b = strconv.AppendInt(b, s.Version, 10)
	b = append(b, `,"applied":`...)
	b = strconv.AppendUint(b, s.Applied, 10)
	var err error
	if s.Root != nil {
		b = append(b, `,"root":`...)
		if b, err = appendRow(b, s.Root); err != nil {
			return nil, err
		}
	}
	if s.Gone {
		b = append(b, `,"gone":true`...)
	}
	if len(s.Subs) > 0 {
		b = append(b, `,"subs":{`...)
		for i, table := range slices.Sorted(maps.Keys(s.Subs)) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendQuoted(b, table)
			b = append(b, ":"...)
			rows := s.Subs[table]
			if rows == nil {
				b = append(b, "null"...)
				continue
			}
			b = append(b, '{')
			for j, key := range slices.Sorted(maps.Keys(rows)) {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendQuoted(b, key)
				b = append(b, ':')
				if b, err = appendRow(b, rows[key]); err != nil {
					return nil, err
				}
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	if p := s.Pending; p != nil {
		b = append(b, `,"pending":{"lsn":`...)
		b = strconv.AppendUint(b, p.LSN, 10)
		b = appendTrue(b, "created", p.Created)
		b = appendTrue(b, "hard_deleted", p.HardDeleted)
		b = appendTrue(b, "was_soft_deleted", p.WasSoftDeleted)
		b = appendTrue(b, "existed", p.Existed)
		b = append(b, '}')
	}
	if len(s.Last) > 0 {
		b = append(b, `,"last":`...)
		b = append(b, s.Last...)
	}
	if s.Partial {
		b = append(b, `,"partial":true`...)
	}
	return append(b, '}'), nil
}

// appendRow appends {"c":[...],"v":[...]}; a nil row is null.
func appendRow(b []byte, r *row) ([]byte, error) {
	if r == nil {
		return append(b, "null"...), nil
	}
	b = append(b, `{"c":`...)
	if r.Cols == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, c := range r.Cols {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendQuoted(b, c)
		}
		b = append(b, ']')
	}
	b = append(b, `,"v":`...)
	if r.Vals == nil {
		return append(b, "null}"...), nil
	}
	b = append(b, '[')
	for i, v := range r.Vals {
		if i > 0 {
			b = append(b, ',')
		}
		switch {
		case v == nil:
			b = append(b, "null"...) // as json.RawMessage marshals nil
			continue
		case len(v) == 0:
			return nil, fmt.Errorf("column %q of a row has an empty value", r.Cols[min(i, len(r.Cols)-1)])
		}
		b = append(b, v...)
	}
	return append(b, "]}"...), nil
}

func appendTrue(b []byte, name string, v bool) []byte {
	if !v {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	return append(b, `":true`...)
}
