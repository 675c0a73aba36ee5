package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
)

// Problem is an RFC 9457 problem detail. Field names the request member (or query parameter)
// at fault; Detail says what is wrong and how to fix it.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail"`
	Instance string `json:"instance,omitempty"`
	Field    string `json:"field,omitempty"`
	// RetryAfter is set on 429: seconds until the key may ask again (also the Retry-After header).
	RetryAfter int `json:"retry_after,omitempty"`
}

func (p *Problem) Error() string { return p.Detail }

// ProblemType is the type URI of each kind of problem; docs/api.md lists them.
const problemBase = "urn:walhook:problem:"

func problem(status int, kind, title, format string, args ...any) *Problem {
	return &Problem{Type: problemBase + kind, Title: title, Status: status, Detail: fmt.Sprintf(format, args...)}
}

func invalidField(field, format string, args ...any) *Problem {
	p := problem(http.StatusUnprocessableEntity, "invalid-field", "A request field is invalid", format, args...)
	p.Field = field
	return p
}

func badQuery(param, format string, args ...any) *Problem {
	p := problem(http.StatusBadRequest, "invalid-parameter", "A query parameter is invalid", format, args...)
	p.Field = param
	return p
}

func notFound(format string, args ...any) *Problem {
	return problem(http.StatusNotFound, "not-found", "Not found", format, args...)
}

func forbidden(format string, args ...any) *Problem {
	return problem(http.StatusForbidden, "forbidden", "Not allowed with this key", format, args...)
}

func writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	if p.Instance == "" {
		p.Instance = r.URL.Path
	}
	w.Header().Set("Content-Type", "application/problem+json")
	if p.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(p.RetryAfter))
	}
	if p.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="walhook"`)
	}
	w.WriteHeader(p.Status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// decodeBody reads a JSON object into dst (a pointer to a struct): the content type must be
// JSON, the body at most max bytes, every member known and of the right type.
func decodeBody(r *http.Request, max int64, dst any) *Problem {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "application/json") {
		return problem(http.StatusUnsupportedMediaType, "unsupported-media-type", "The body must be JSON",
			"Content-Type %q; send the body as JSON with Content-Type: application/json", ct)
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, max))
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil && dec.More() {
		err = errors.New("data after the JSON object")
	}
	if err == nil {
		return nil
	}
	var mbe *http.MaxBytesError
	var ute *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &mbe):
		return problem(http.StatusRequestEntityTooLarge, "body-too-large", "The body is too large",
			"the body is larger than %d bytes (api.max_body_bytes); send less", max)
	case errors.As(err, &ute):
		field := ute.Field
		if field == "" {
			return problem(http.StatusBadRequest, "malformed-body", "The body is not a JSON object", "the body must be a JSON object, not %s", ute.Value)
		}
		return invalidField(field, "%s is %s; it must be %s", field, ute.Value, jsonKind(ute.Type))
	case errors.As(err, &se):
		return problem(http.StatusBadRequest, "malformed-body", "The body is not valid JSON", "invalid JSON at byte %d: %v", se.Offset, err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return invalidField(name, "unknown member %q; the members are %s", name, strings.Join(members(dst), ", "))
	case errors.Is(err, errEOF(err)):
		return problem(http.StatusBadRequest, "malformed-body", "The body is empty", "the body is empty; send a JSON object (at least {})")
	}
	return problem(http.StatusBadRequest, "malformed-body", "The body is not valid JSON", "%v", err)
}

func errEOF(err error) error {
	if err != nil && (err.Error() == "EOF" || err.Error() == "unexpected EOF") {
		return err
	}
	return errors.New("not EOF")
}

func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Float64:
		return "a number"
	case reflect.Map:
		return "an object of strings"
	case reflect.Slice:
		return "an array"
	}
	return "a " + t.Kind().String()
}

// members lists the JSON member names of the struct dst points at.
func members(dst any) []string {
	t := reflect.TypeOf(dst)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}
