package avro

import (
	"errors"
	"strconv"
)

// Parsers of PostgreSQL's text output (pgoutput text format with
// DateStyle=ISO, TimeZone=UTC, bytea_output=hex) straight into Avro binary.
// They append to dst and do not allocate on success; on failure they return
// one of the reasons below, which AppendChange wraps into a *ValueError.

var (
	errSyntax        = errors.New("invalid syntax")
	errRange         = errors.New("value out of range")
	errDecimalNaN    = errors.New("NaN and infinities have no Avro decimal form; make the column an unconstrained numeric (encoded as text) or forbid them with a CHECK constraint")
	errDecimalRange  = errors.New("value has more digits than the column's numeric(precision, scale)")
	errDecimalScale  = errors.New("value has more fractional digits than the column's scale")
	errNestedArray   = errors.New("multi-dimensional arrays are not supported; store them as jsonb or split the dimensions")
	errByteaEscape   = errors.New(`bytea is not in hex format; set bytea_output=hex on the replication connection`)
	errArrayElemSize = errors.New("quoted array element with escapes is too long for its type")
)

// appendValue parses text s as column type t and appends its Avro encoding
// (without the union index).
func appendValue(dst, s []byte, t *colType) ([]byte, error) {
	switch t.kind {
	case kInt:
		v, err := parseInt(s, 32)
		return appendLong(dst, v), err
	case kLong:
		v, err := parseInt(s, 64)
		return appendLong(dst, v), err
	case kFloat:
		v, err := strconv.ParseFloat(string(s), 32)
		return appendFloat(dst, float32(v)), numErr(err)
	case kDouble:
		v, err := strconv.ParseFloat(string(s), 64)
		return appendDouble(dst, v), numErr(err)
	case kBool:
		return appendParsedBool(dst, s)
	case kDecimal:
		return appendDecimal(dst, s, t.precision, t.scale)
	case kTimestampTZ, kTimestamp:
		v, err := parseTimestamp(s, t.kind == kTimestampTZ)
		return appendLong(dst, v), err
	case kDate:
		v, err := parseDateValue(s)
		return appendInt(dst, v), err
	case kTime:
		v, err := parseTimeOfDay(s)
		return appendLong(dst, v), err
	case kUUID:
		if !validUUID(s) {
			return dst, errSyntax
		}
		return appendBytes(dst, s), nil
	case kBytes:
		return appendBytea(dst, s)
	case kArray:
		return appendArray(dst, s, t)
	default: // kString, kJSON, kNumericText
		return appendBytes(dst, s), nil
	}
}

// numErr keeps strconv's error reason without its copy of the input (the
// ValueError carries the value).
// A type assertion, not errors.As: the latter's pointer argument would move
// a variable to the heap on every call.
func numErr(err error) error {
	if ne, ok := err.(*strconv.NumError); ok {
		return ne.Err
	}
	return err
}

// parseInt parses a decimal integer that must fit in bits.
func parseInt(s []byte, bits uint) (int64, error) {
	neg := len(s) > 0 && s[0] == '-'
	if neg || len(s) > 0 && s[0] == '+' {
		s = s[1:]
	}
	if len(s) == 0 {
		return 0, errSyntax
	}
	limit := uint64(1) << (bits - 1) // magnitude of the most negative value
	var u uint64
	for _, c := range s {
		if !isDigit(c) {
			return 0, errSyntax
		}
		if u > (limit+9)/10 {
			return 0, errRange
		}
		u = u*10 + uint64(c-'0')
	}
	if u > limit || (!neg && u == limit) {
		return 0, errRange
	}
	if neg {
		return -int64(u-1) - 1, nil // avoids overflowing on the most negative value
	}
	return int64(u), nil
}

func appendParsedBool(dst, s []byte) ([]byte, error) {
	if len(s) == 1 && (s[0] == 't' || s[0] == 'f') {
		return appendBool(dst, s[0] == 't'), nil
	}
	return dst, errSyntax
}

// validUUID checks the canonical 8-4-4-4-12 hex form PostgreSQL outputs.
func validUUID(s []byte) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
		} else if unhex(c) < 0 {
			return false
		}
	}
	return true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c - 'a' + 10)
	case c >= 'A' && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// appendBytea decodes bytea's hex output ("\x0a0b") into Avro bytes.
func appendBytea(dst, s []byte) ([]byte, error) {
	if len(s) < 2 || s[0] != '\\' || s[1] != 'x' {
		return dst, errByteaEscape
	}
	hex := s[2:]
	if len(hex)%2 != 0 {
		return dst, errSyntax
	}
	start := len(dst)
	dst = appendLong(dst, int64(len(hex)/2))
	for i := 0; i < len(hex); i += 2 {
		hi, lo := unhex(hex[i]), unhex(hex[i+1])
		if hi < 0 || lo < 0 {
			return dst[:start], errSyntax
		}
		dst = append(dst, byte(hi<<4|lo))
	}
	return dst, nil
}

// maxDecimalBytes holds the two's complement of numeric's largest precision
// (1000 digits ≈ 3322 bits) plus a sign byte.
const maxDecimalBytes = 424

// appendDecimal encodes numeric text as an Avro decimal of the given
// precision and scale: the unscaled value, big-endian two's complement,
// minimal length. The text is rescaled to the column's scale; digits that
// would be lost are an error, never rounded.
func appendDecimal(dst, s []byte, precision, scale int) ([]byte, error) {
	neg := len(s) > 0 && s[0] == '-'
	if neg || len(s) > 0 && s[0] == '+' {
		s = s[1:]
	}
	intPart, frac, err := splitDecimal(s)
	if err != nil {
		return dst, err
	}
	for len(intPart) > 0 && intPart[0] == '0' {
		intPart = intPart[1:]
	}
	if len(intPart) > precision-scale {
		return dst, errDecimalRange
	}
	if len(frac) > scale {
		for _, c := range frac[scale:] {
			if c != '0' {
				return dst, errDecimalScale
			}
		}
		frac = frac[:scale]
	}
	var buf [maxDecimalBytes]byte
	mag := magnitude(&buf, intPart, frac, scale-len(frac))
	return appendTwosComplement(dst, &buf, mag, neg), nil
}

// splitDecimal validates plain decimal text and splits it at the point.
func splitDecimal(s []byte) (intPart, frac []byte, err error) {
	if len(s) > 0 && (s[0] == 'N' || s[0] == 'I' || s[0] == 'i') {
		return nil, nil, errDecimalNaN
	}
	intPart = s
	for i, c := range s {
		if c == '.' {
			intPart, frac = s[:i], s[i+1:]
			break
		}
	}
	if len(intPart)+len(frac) == 0 {
		return nil, nil, errSyntax
	}
	if !allDigits(intPart) || !allDigits(frac) {
		return nil, nil, errSyntax
	}
	return intPart, frac, nil
}

func allDigits(s []byte) bool {
	for _, c := range s {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

// magnitude writes the unscaled value intPart·frac·0^pad big-endian at the
// end of buf and returns its first used index. Up to 19 digits go through a
// uint64; longer values use schoolbook multiply-by-ten on the bytes.
func magnitude(buf *[maxDecimalBytes]byte, intPart, frac []byte, pad int) int {
	if len(intPart)+len(frac)+pad <= 19 {
		var u uint64
		u = accumulate(accumulate(u, intPart), frac)
		for range pad {
			u *= 10
		}
		start := len(buf)
		for ; u > 0; u >>= 8 {
			start--
			buf[start] = byte(u)
		}
		return start
	}
	start := len(buf)
	start = mulAdd(buf, start, intPart)
	start = mulAdd(buf, start, frac)
	for range pad {
		start = mulAddDigit(buf, start, 0)
	}
	return start
}

func accumulate(u uint64, digits []byte) uint64 {
	for _, c := range digits {
		u = u*10 + uint64(c-'0')
	}
	return u
}

func mulAdd(buf *[maxDecimalBytes]byte, start int, digits []byte) int {
	for _, c := range digits {
		start = mulAddDigit(buf, start, c-'0')
	}
	return start
}

// mulAddDigit sets buf[start:] = buf[start:]*10 + d.
func mulAddDigit(buf *[maxDecimalBytes]byte, start int, d byte) int {
	carry := uint(d)
	for i := len(buf) - 1; i >= start; i-- {
		v := uint(buf[i])*10 + carry
		buf[i], carry = byte(v), v>>8
	}
	for carry > 0 {
		start--
		buf[start], carry = byte(carry), carry>>8
	}
	return start
}

// appendTwosComplement appends buf[start:] (a magnitude) as Avro bytes in
// minimal big-endian two's complement, negated when neg.
func appendTwosComplement(dst []byte, buf *[maxDecimalBytes]byte, start int, neg bool) []byte {
	if start == len(buf) { // zero, including "-0.00"
		return append(dst, 2, 0) // length 1, one zero byte
	}
	start-- // room for the sign byte
	buf[start] = 0
	if neg {
		negate(buf[start:])
		for start < len(buf)-1 && buf[start] == 0xff && buf[start+1]&0x80 != 0 {
			start++
		}
	} else if buf[start+1]&0x80 == 0 {
		start++
	}
	return appendBytes(dst, buf[start:])
}

// negate replaces b with its two's complement in place.
func negate(b []byte) {
	carry := uint(1)
	for i := len(b) - 1; i >= 0; i-- {
		v := uint(^b[i]) + carry
		b[i], carry = byte(v), v>>8
	}
}
