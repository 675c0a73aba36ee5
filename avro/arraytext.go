package avro

import "bytes"

// PostgreSQL array text: "{1,2,NULL}", "{\"a b\",\"q\\\"uote\"}", optionally
// preceded by bounds "[0:2]=" when the lower bound is not 1. Only
// one-dimensional arrays are supported.

// arrayElem is one element of an array literal.
type arrayElem struct {
	text    []byte // without quotes, escapes still in place
	quoted  bool
	escapes int // number of backslash escapes in text
}

// isNull reports the unquoted NULL keyword.
func (e arrayElem) isNull() bool {
	return !e.quoted && len(e.text) == 4 && bytes.EqualFold(e.text, []byte("NULL"))
}

// appendArray encodes array text as an Avro array of ["null", elem]. Avro
// prefixes a block with its item count, so a first pass counts elements.
func appendArray(dst, s []byte, t *colType) ([]byte, error) {
	inner, err := arrayBody(s)
	if err != nil {
		return dst, err
	}
	n, err := countElems(inner, t.delim)
	if err != nil || n == 0 {
		return appendLong(dst, 0), err
	}
	start := len(dst)
	dst = appendLong(dst, int64(n))
	for pos := 0; pos < len(inner); {
		e, next, _ := nextElem(inner, pos, t.delim)
		if dst, err = appendElem(dst, e, t.elem); err != nil {
			return dst[:start], err
		}
		pos = next
	}
	return append(dst, 0), nil
}

// arrayBody strips optional bounds and the outer braces.
func arrayBody(s []byte) ([]byte, error) {
	if len(s) > 0 && s[0] == '[' {
		eq := bytes.IndexByte(s, '=')
		if eq < 0 {
			return nil, errSyntax
		}
		s = s[eq+1:]
	}
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return nil, errSyntax
	}
	return s[1 : len(s)-1], nil
}

func countElems(inner []byte, delim byte) (int, error) {
	n := 0
	for pos := 0; pos < len(inner); n++ {
		_, next, err := nextElem(inner, pos, delim)
		if err != nil {
			return 0, err
		}
		if next > len(inner) {
			return 0, errSyntax // trailing delimiter
		}
		pos = next
	}
	return n, nil
}

// nextElem scans the element at pos and returns the position after its
// delimiter.
func nextElem(inner []byte, pos int, delim byte) (arrayElem, int, error) {
	if pos < len(inner) && inner[pos] == '"' {
		return quotedElem(inner, pos, delim)
	}
	end := pos
	for end < len(inner) && inner[end] != delim {
		if c := inner[end]; c == '{' || c == '}' {
			return arrayElem{}, 0, errNestedArray
		} else if c == '"' || c == '\\' {
			return arrayElem{}, 0, errSyntax
		}
		end++
	}
	if end == pos {
		return arrayElem{}, 0, errSyntax
	}
	return arrayElem{text: inner[pos:end]}, afterDelim(inner, end), nil
}

func quotedElem(inner []byte, pos int, delim byte) (arrayElem, int, error) {
	e := arrayElem{quoted: true}
	for i := pos + 1; i < len(inner); i++ {
		switch inner[i] {
		case '\\':
			e.escapes++
			i++
		case '"':
			e.text = inner[pos+1 : i]
			if i+1 < len(inner) && inner[i+1] != delim {
				return arrayElem{}, 0, errSyntax
			}
			return e, afterDelim(inner, i+1), nil
		}
	}
	return arrayElem{}, 0, errSyntax
}

// afterDelim steps over the delimiter at end. A trailing delimiter ("{1,}")
// returns len(inner)+1, which countElems reports as a syntax error.
func afterDelim(inner []byte, end int) int {
	if end < len(inner) {
		end++
		if end == len(inner) {
			return end + 1 // trailing delimiter: signalled by pos > len
		}
	}
	return end
}

// appendElem writes one union-wrapped element.
func appendElem(dst []byte, e arrayElem, t *colType) ([]byte, error) {
	if e.isNull() {
		return append(dst, 0), nil
	}
	dst = append(dst, 2) // union branch 1
	if e.escapes == 0 {
		return appendValue(dst, e.text, t)
	}
	if isStringKind(t.kind) {
		dst = appendLong(dst, int64(len(e.text)-e.escapes))
		return appendUnescaped(dst, e.text), nil
	}
	var buf [128]byte
	if len(e.text) > len(buf) {
		return dst, errArrayElemSize
	}
	return appendValue(dst, appendUnescaped(buf[:0], e.text), t)
}

func isStringKind(k kind) bool {
	return k == kString || k == kJSON || k == kNumericText || k == kUUID
}

// appendUnescaped drops each backslash and keeps the byte after it.
func appendUnescaped(dst, s []byte) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
		}
		if i < len(s) {
			dst = append(dst, s[i])
		}
	}
	return dst
}
