// Package apitest checks requests and responses against the API's OpenAPI 3.1 document and
// payloads against the event catalog's JSON Schemas, for tests. It is for tests only and must
// not be imported by non-test code.
package apitest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// OpenAPI is a parsed OpenAPI 3.1 document whose schemas (JSON Schema 2020-12) validate
// requests and responses.
type OpenAPI struct {
	doc      map[string]any
	compiler *jsonschema.Compiler
	mu       sync.Mutex
	schemas  map[string]*jsonschema.Schema
}

const docURL = "mem://openapi.json"

// LoadOpenAPI parses raw.
func LoadOpenAPI(raw []byte) (*OpenAPI, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	m, ok := doc.(map[string]any)
	if !ok || m["openapi"] != "3.1.0" {
		return nil, fmt.Errorf("openapi.json: not an OpenAPI 3.1.0 document")
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(docURL, doc); err != nil {
		return nil, err
	}
	return &OpenAPI{doc: m, compiler: c, schemas: map[string]*jsonschema.Schema{}}, nil
}

// Paths returns every (method, path template) the document describes.
func (o *OpenAPI) Paths() map[string][]string {
	out := map[string][]string{}
	for p, item := range o.doc["paths"].(map[string]any) {
		for m := range item.(map[string]any) {
			out[p] = append(out[p], strings.ToUpper(m))
		}
	}
	return out
}

// match finds the path template of path.
func (o *OpenAPI) match(path string) (string, bool) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	best := ""
	for tmpl := range o.doc["paths"].(map[string]any) {
		ts := strings.Split(strings.Trim(tmpl, "/"), "/")
		if len(ts) != len(segs) {
			continue
		}
		ok, literal := true, 0
		for i := range ts {
			if strings.HasPrefix(ts[i], "{") {
				continue
			}
			if ts[i] != segs[i] {
				ok = false
				break
			}
			literal++
		}
		// The most literal template wins (/v1/dead-letters/redrive over /v1/dead-letters/{id}).
		if ok && (best == "" || literal > strings.Count(best, "/")-strings.Count(best, "{")) {
			best = tmpl
		}
	}
	return best, best != ""
}

func pointer(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteByte('/')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(p, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

func (o *OpenAPI) schemaAt(ptr string) (*jsonschema.Schema, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if s := o.schemas[ptr]; s != nil {
		return s, nil
	}
	s, err := o.compiler.Compile(docURL + "#" + ptr)
	if err != nil {
		return nil, err
	}
	o.schemas[ptr] = s
	return s, nil
}

func (o *OpenAPI) operation(method, path string) (string, map[string]any, error) {
	tmpl, ok := o.match(path)
	if !ok {
		return "", nil, fmt.Errorf("%s %s: no path of the OpenAPI document matches", method, path)
	}
	op, ok := o.doc["paths"].(map[string]any)[tmpl].(map[string]any)[strings.ToLower(method)].(map[string]any)
	if !ok {
		return "", nil, fmt.Errorf("%s %s: the document has no %s operation on %s", method, path, method, tmpl)
	}
	return tmpl, op, nil
}

// CompileAt compiles the schema at JSON pointer ptr of the document ("/components/schemas/X").
func (o *OpenAPI) CompileAt(ptr string) error {
	_, err := o.schemaAt(ptr)
	return err
}

// CheckRequest validates a request's query parameters (known names) and JSON body.
func (o *OpenAPI) CheckRequest(method, rawPath string, body []byte) error {
	u, err := url.Parse(rawPath)
	if err != nil {
		return err
	}
	tmpl, op, err := o.operation(method, u.Path)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	if ps, ok := op["parameters"].([]any); ok {
		for _, p := range ps {
			pm := p.(map[string]any)
			if pm["in"] == "query" {
				known[pm["name"].(string)] = true
			}
		}
	}
	for k := range u.Query() {
		if !known[k] {
			return fmt.Errorf("%s %s: query parameter %q is not in the document", method, tmpl, k)
		}
	}
	if len(body) == 0 {
		if rb, ok := op["requestBody"].(map[string]any); ok && rb["required"] == true {
			return fmt.Errorf("%s %s: the document requires a body", method, tmpl)
		}
		return nil
	}
	if _, ok := op["requestBody"]; !ok {
		return fmt.Errorf("%s %s: a body is sent but the document describes none", method, tmpl)
	}
	return o.validate(pointer("paths", tmpl, strings.ToLower(method), "requestBody", "content", "application/json", "schema"), body,
		fmt.Sprintf("%s %s request", method, tmpl))
}

// CheckResponse validates that the status is documented and the body matches its schema.
func (o *OpenAPI) CheckResponse(method, rawPath string, status int, contentType string, body []byte) error {
	u, err := url.Parse(rawPath)
	if err != nil {
		return err
	}
	tmpl, op, err := o.operation(method, u.Path)
	if err != nil {
		return err
	}
	resp, ok := op["responses"].(map[string]any)[strconv.Itoa(status)].(map[string]any)
	if !ok {
		return fmt.Errorf("%s %s: status %d is not documented (body %.300s)", method, tmpl, status, body)
	}
	content, _ := resp["content"].(map[string]any)
	ct, _, _ := strings.Cut(contentType, ";")
	if _, ok := content[ct]; !ok {
		return fmt.Errorf("%s %s: %d answered %s, the document says %v", method, tmpl, status, ct, keys(content))
	}
	return o.validate(pointer("paths", tmpl, strings.ToLower(method), "responses", strconv.Itoa(status), "content", ct, "schema"), body,
		fmt.Sprintf("%s %s %d response", method, tmpl, status))
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func (o *OpenAPI) validate(ptr string, body []byte, what string) error {
	s, err := o.schemaAt(ptr)
	if err != nil {
		return fmt.Errorf("%s: compile %s: %w", what, ptr, err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: not JSON: %w: %.300s", what, err, body)
	}
	if err := s.Validate(v); err != nil {
		return fmt.Errorf("%s does not match the document: %v\nbody: %.2000s", what, err, body)
	}
	return nil
}

// CompileSchema compiles one standalone JSON Schema (the catalog's).
func CompileSchema(doc any, name string) (*jsonschema.Schema, error) {
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	u := "mem://" + url.PathEscape(name) + ".json"
	if err := c.AddResource(u, v); err != nil {
		return nil, err
	}
	return c.Compile(u)
}

// Validate checks a JSON document against s.
func Validate(s *jsonschema.Schema, body []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return s.Validate(v)
}

// Client calls the API with a key and fails the test when a request or response disagrees
// with the document.
type Client struct {
	T    testing.TB
	Base string
	Key  string
	Doc  *OpenAPI
	HTTP *http.Client
}

// Response is an answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v.
func (r Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %.300s: %v", r.Body, err)
	}
}

// Do sends method path with body (nil: none; []byte: as is; else JSON) and validates both
// ways.
func (c *Client) Do(method, path string, body any) Response {
	c.T.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			c.T.Fatal(err)
		}
	}
	if err := c.Doc.CheckRequest(method, path, raw); err != nil {
		c.T.Fatalf("request disagrees with openapi.json: %v", err)
	}
	r := c.Raw(method, path, raw, "application/json")
	if err := c.Doc.CheckResponse(method, path, r.Status, r.Header.Get("Content-Type"), r.Body); err != nil {
		c.T.Fatalf("response disagrees with openapi.json: %v", err)
	}
	return r
}

// Raw sends without validating the request (for malformed ones); nothing is checked.
func (c *Client) Raw(method, path string, body []byte, contentType string) Response {
	c.T.Helper()
	req, err := http.NewRequest(method, c.Base+path, bytes.NewReader(body))
	if err != nil {
		c.T.Fatal(err)
	}
	if c.Key != "" {
		req.Header.Set("Authorization", "Bearer "+c.Key)
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 60 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		c.T.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// Invalid sends a request the document does not allow (to see it refused) and validates only
// the answer.
func (c *Client) Invalid(method, path string, body any) Response {
	c.T.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		c.T.Fatal(err)
	}
	r := c.Raw(method, path, raw, "application/json")
	if err := c.Doc.CheckResponse(method, path, r.Status, r.Header.Get("Content-Type"), r.Body); err != nil {
		c.T.Fatalf("response disagrees with openapi.json: %v", err)
	}
	return r
}
