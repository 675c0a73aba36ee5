package compliance

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/linkedin/goavro/v2"

	"github.com/walhook/walhook/avro"
)

// staleError says a payload does not fit the schema derived from the catalog: a column the schema
// lacks, or a non-null column missing. The sink reads the catalog again and retries once.
type staleError struct {
	path, why string
}

func (e *staleError) Error() string { return e.path + ": " + e.why }

// native builds goavro's native form of one compliance record from a snapshot.
func (rs *rootSchema) native(s avro.Snapshot) (map[string]any, error) {
	obj, err := snapshotObject(s.Payload)
	if err != nil {
		return nil, err
	}
	snap, err := recordValue(rs.snap, obj, s.Tenant, "snapshot")
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"key":         s.Key,
		"event_type":  s.EventType,
		"verb":        s.Verb.String(),
		"version":     s.Version,
		"commit_lsn":  int64(s.CommitLSN),
		"commit_time": s.CommitTime.UnixMilli(),
		"tenant":      s.Tenant,
		"snapshot":    snap,
	}, nil
}

// snapshotObject decodes the payload: the bare object, or for an old_new root its "new" member
// ("old" when "new" is null). Numbers stay json.Number so no digit is lost.
func snapshotObject(payload []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(payload))
	d.UseNumber()
	var obj map[string]any
	if err := d.Decode(&obj); err != nil || obj == nil {
		return nil, fmt.Errorf("payload is not a JSON object: %v", err)
	}
	if len(obj) == 2 {
		if cur, ok := obj["new"]; ok {
			old, hasOld := obj["old"]
			if m, ok := cur.(map[string]any); ok && hasOld {
				return m, nil
			}
			if m, ok := old.(map[string]any); ok && cur == nil {
				return m, nil
			}
		}
	}
	return obj, nil
}

func recordValue(n *node, obj map[string]any, tenant, path string) (map[string]any, error) {
	out := make(map[string]any, len(n.fields))
	for _, f := range n.fields {
		var v any
		var present bool
		if f.tenant {
			v, present = tenantValue(tenant), true
		} else {
			v, present = obj[f.json]
		}
		val, err := fieldValue(f, v, present, path+"."+f.json)
		if err != nil {
			return nil, err
		}
		out[f.name] = val
	}
	for k := range obj {
		if !hasField(n, k) {
			return nil, &staleError{path + "." + k, "not a column the schema knows"}
		}
	}
	return out, nil
}

func tenantValue(t string) any {
	if t == "" {
		return nil
	}
	return t
}

func hasField(n *node, name string) bool {
	for _, f := range n.fields {
		if f.json == name && !f.tenant {
			return true
		}
	}
	return false
}

func fieldValue(f *node, v any, present bool, path string) (any, error) {
	if !present || v == nil {
		if f.nullable {
			return nil, nil
		}
		if !present {
			return nil, &staleError{path, "missing, and the column is NOT NULL"}
		}
		return nil, &staleError{path, "null, and the column is NOT NULL"}
	}
	val, err := value(f, v, path)
	if err != nil || !f.nullable {
		return val, err
	}
	return goavro.Union(f.branch(), val), nil
}

// value converts one non-null JSON value to the native form of n.
func value(n *node, v any, path string) (any, error) {
	switch n.kind {
	case kRecord:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, typeError(path, "an object", v)
		}
		return recordValue(n, m, "", path)
	case kRecords, kArray:
		list, ok := v.([]any)
		if !ok {
			return nil, typeError(path, "an array", v)
		}
		out := make([]any, len(list))
		for i, e := range list {
			p := path + "[" + strconv.Itoa(i) + "]"
			var err error
			if n.kind == kArray {
				out[i], err = fieldValue(n.elem, e, true, p)
			} else if m, ok := e.(map[string]any); ok {
				out[i], err = recordValue(n, m, "", p)
			} else {
				err = typeError(p, "an object", e)
			}
			if err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return scalar(n.kind, v, path)
}

func scalar(k kind, v any, path string) (any, error) {
	switch k {
	case kInt, kLong:
		num, err := number(v, path)
		if err != nil {
			return nil, err
		}
		i, err := strconv.ParseInt(num, 10, 64)
		if err != nil || (k == kInt && (i < math.MinInt32 || i > math.MaxInt32)) {
			return nil, typeError(path, "an integer", v)
		}
		if k == kInt {
			return int32(i), nil
		}
		return i, nil
	case kFloat, kDouble:
		f, err := float(v, path)
		if k == kFloat {
			return float32(f), err
		}
		return f, err
	case kBool:
		b, ok := v.(bool)
		if !ok {
			return nil, typeError(path, "a boolean", v)
		}
		return b, nil
	case kTimestamp:
		return timestampMillis(v, path)
	case kDate:
		return dateDays(v, path)
	case kBytes:
		s, ok := v.(string)
		if !ok || !strings.HasPrefix(s, `\x`) {
			return nil, typeError(path, `bytea text \x…`, v)
		}
		b, err := hex.DecodeString(s[2:])
		if err != nil {
			return nil, typeError(path, `bytea text \x…`, v)
		}
		return b, nil
	}
	return text(v), nil
}

// text is a string value as is, anything else (numeric, json) as compact JSON text.
func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func number(v any, path string) (string, error) {
	if n, ok := v.(json.Number); ok {
		return n.String(), nil
	}
	return "", typeError(path, "a number", v)
}

func float(v any, path string) (float64, error) {
	switch x := v.(type) {
	case json.Number:
		return x.Float64()
	case string: // NaN, Infinity, -Infinity
		if f, err := strconv.ParseFloat(x, 64); err == nil {
			return f, nil
		}
	}
	return 0, typeError(path, "a number", v)
}

// timestampMillis parses the payload's UTC ISO 8601 text; infinities become the int64 extremes.
func timestampMillis(v any, path string) (int64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, typeError(path, "a timestamp", v)
	}
	switch s {
	case "infinity":
		return math.MaxInt64, nil
	case "-infinity":
		return math.MinInt64, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, typeError(path, "an ISO 8601 timestamp", v)
	}
	return t.UnixMilli(), nil
}

// dateDays parses YYYY-MM-DD into days since 1970-01-01; infinities become the int32 extremes.
func dateDays(v any, path string) (int32, error) {
	s, ok := v.(string)
	if !ok {
		return 0, typeError(path, "a date", v)
	}
	switch s {
	case "infinity":
		return math.MaxInt32, nil
	case "-infinity":
		return math.MinInt32, nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return 0, typeError(path, "a date YYYY-MM-DD", v)
	}
	return int32(t.Unix() / 86400), nil
}

// errPayload marks a payload value that does not fit its column's type.
var errPayload = errors.New("payload value does not fit the column type")

func typeError(path, want string, got any) error {
	return fmt.Errorf("%s: want %s, got %s: %w", path, want, text(got), errPayload)
}
