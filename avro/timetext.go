package avro

import (
	"bytes"
	"math"
)

// Date and time text as PostgreSQL prints it with DateStyle=ISO:
// "2026-02-03 10:46:23.26+00", "0044-03-15 12:00:00+00 BC", "infinity".

const (
	microsPerSecond = 1_000_000
	microsPerDay    = 86_400 * microsPerSecond
	// maxTimestampDays keeps days*microsPerDay plus a day of clock and
	// offset inside int64: ±292,000 years around 1970.
	maxTimestampDays = math.MaxInt64/microsPerDay - 2
)

var (
	textInfinity    = []byte("infinity")
	textNegInfinity = []byte("-infinity")
	textBC          = []byte(" BC")
)

// parseTimestamp returns microseconds since 1970-01-01 00:00:00 UTC
// (timestamptz) or of the wall clock (timestamp). PostgreSQL's infinities
// map to the int64 extremes.
func parseTimestamp(s []byte, withZone bool) (int64, error) {
	if bytes.Equal(s, textInfinity) {
		return math.MaxInt64, nil
	}
	if bytes.Equal(s, textNegInfinity) {
		return math.MinInt64, nil
	}
	s, bc := cutBC(s)
	days, s, err := parseDate(s, bc)
	if err != nil {
		return 0, err
	}
	if len(s) == 0 || s[0] != ' ' {
		return 0, errSyntax
	}
	clock, s, err := parseClock(s[1:])
	if err != nil {
		return 0, err
	}
	var offset int64
	if withZone {
		if offset, s, err = parseOffset(s); err != nil {
			return 0, err
		}
	}
	if len(s) != 0 {
		return 0, errSyntax
	}
	if days > maxTimestampDays || days < -maxTimestampDays {
		return 0, errRange
	}
	return days*microsPerDay + clock - offset*microsPerSecond, nil
}

// parseDateValue returns days since 1970-01-01; infinities map to the int32
// extremes.
func parseDateValue(s []byte) (int32, error) {
	if bytes.Equal(s, textInfinity) {
		return math.MaxInt32, nil
	}
	if bytes.Equal(s, textNegInfinity) {
		return math.MinInt32, nil
	}
	s, bc := cutBC(s)
	days, rest, err := parseDate(s, bc)
	if err != nil {
		return 0, err
	}
	if len(rest) != 0 {
		return 0, errSyntax
	}
	if days > math.MaxInt32-1 || days < math.MinInt32+1 {
		return 0, errRange
	}
	return int32(days), nil
}

// parseTimeOfDay returns microseconds since midnight of "HH:MM:SS[.ffffff]".
func parseTimeOfDay(s []byte) (int64, error) {
	v, rest, err := parseClock(s)
	if err == nil && len(rest) != 0 {
		err = errSyntax
	}
	return v, err
}

func cutBC(s []byte) ([]byte, bool) {
	if bytes.HasSuffix(s, textBC) {
		return s[:len(s)-len(textBC)], true
	}
	return s, false
}

// parseDate parses "Y…Y-MM-DD" at the start of s and returns days since
// 1970-01-01 (proleptic Gregorian; year 1 BC is astronomical year 0).
func parseDate(s []byte, bc bool) (days int64, rest []byte, err error) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if i < 4 || i > 7 || len(s) < i+6 || s[i] != '-' || s[i+3] != '-' {
		return 0, nil, errSyntax
	}
	year := int64(accumulate(0, s[:i]))
	month, ok1 := twoDigits(s[i+1:])
	day, ok2 := twoDigits(s[i+4:])
	if !ok1 || !ok2 {
		return 0, nil, errSyntax
	}
	if bc {
		year = 1 - year
	}
	if year == 0 && !bc || month < 1 || month > 12 || day < 1 || day > daysIn(year, month) {
		return 0, nil, errRange
	}
	return daysFromCivil(year, month, day), s[i+6:], nil
}

func twoDigits(s []byte) (int, bool) {
	if len(s) < 2 || !isDigit(s[0]) || !isDigit(s[1]) {
		return 0, false
	}
	return int(s[0]-'0')*10 + int(s[1]-'0'), true
}

func daysIn(year int64, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil is Howard Hinnant's days_from_civil algorithm.
func daysFromCivil(y int64, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := int64((m + 9) % 12)
	doy := (153*mp+2)/5 + int64(d) - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// parseClock parses "HH:MM:SS[.f…]" (up to microseconds, 24:00:00 allowed
// like PostgreSQL allows it) at the start of s.
func parseClock(s []byte) (micros int64, rest []byte, err error) {
	if len(s) < 8 || s[2] != ':' || s[5] != ':' {
		return 0, nil, errSyntax
	}
	h, ok1 := twoDigits(s)
	m, ok2 := twoDigits(s[3:])
	sec, ok3 := twoDigits(s[6:])
	if !ok1 || !ok2 || !ok3 {
		return 0, nil, errSyntax
	}
	frac, rest, err := parseFraction(s[8:])
	if err != nil {
		return 0, nil, err
	}
	if m > 59 || sec > 59 || h > 24 || h == 24 && (m|sec != 0 || frac != 0) {
		return 0, nil, errRange
	}
	return (int64(h)*3600+int64(m)*60+int64(sec))*microsPerSecond + frac, rest, nil
}

// parseFraction parses an optional ".f…" of one to six digits as micros.
func parseFraction(s []byte) (int64, []byte, error) {
	if len(s) == 0 || s[0] != '.' {
		return 0, s, nil
	}
	i := 1
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	n := i - 1
	if n == 0 || n > 6 {
		return 0, nil, errSyntax
	}
	v := int64(accumulate(0, s[1:i]))
	for range 6 - n {
		v *= 10
	}
	return v, s[i:], nil
}

// parseOffset parses a UTC offset "+hh[:mm[:ss]]" in seconds east of UTC.
func parseOffset(s []byte) (int64, []byte, error) {
	if len(s) < 3 || (s[0] != '+' && s[0] != '-') {
		return 0, nil, errSyntax
	}
	neg := s[0] == '-'
	h, ok := twoDigits(s[1:])
	if !ok {
		return 0, nil, errSyntax
	}
	secs, rest := int64(h)*3600, s[3:]
	for unit := int64(60); unit >= 1 && len(rest) > 0 && rest[0] == ':'; unit /= 60 {
		v, ok := twoDigits(rest[1:])
		if !ok || v > 59 {
			return 0, nil, errSyntax
		}
		secs, rest = secs+int64(v)*unit, rest[3:]
	}
	if neg {
		secs = -secs
	}
	return secs, rest, nil
}
