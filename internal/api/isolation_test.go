package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/api"
	"github.com/walhook/walhook/sinks/webhook"
)

// TestTenantTokenIsolationRandomized makes random requests, over every route, with acme's
// token, aimed at every tenant's resources: no answer may show another tenant's data, and no
// request may change it or ask the sink to deliver it.
func TestTenantTokenIsolationRandomized(t *testing.T) {
	e := newEnv(t)
	op := e.client(e.operator)
	tenants := []string{"acme", "globex", "initech"}
	type res struct{ apps, subs, deliveries, dead []string }
	of := map[string]*res{}
	e.recv.Respond(func(_ int, req webhookReq) webhookResp {
		if strings.HasSuffix(req.Path, "/fail") {
			return webhookResp{Status: 500}
		}
		return webhookResp{Status: 200}
	})
	for _, tn := range tenants {
		r := &res{}
		of[tn] = r
		var app struct {
			ID   int64
			UUID string
			Name string
		}
		op.Do("POST", "/v1/applications", map[string]any{"name": tn + "-app", "tenant": tn}).JSON(t, &app)
		r.apps = append(r.apps, fmt.Sprint(app.ID), app.UUID, app.Name)
		for _, path := range []string{"/ok", "/fail"} {
			var s struct{ UUID string }
			op.Do("POST", "/v1/subscriptions", subBody(app.UUID, tn, "incident.instance.updated", e.recv.URL()+"/"+tn+path)).JSON(t, &s)
			r.subs = append(r.subs, s.UUID)
		}
	}
	// A snapshot produced before the sink has reloaded its subscriptions (LISTEN/NOTIFY) finds
	// none: each round produces a new version until every tenant has its deliveries.
	version := map[string]int64{}
	for i, tn := range tenants {
		eventually(t, func() error {
			version[tn]++
			e.produce(tn, fmt.Sprint(101+i), version[tn], avro.VerbUpdated)
			var d struct {
				Items []struct {
					WebhookID string `json:"webhook_id"`
				}
			}
			op.Do("GET", "/v1/deliveries?tenant="+tn, nil).JSON(t, &d)
			var dl struct{ Items []struct{ ID string } }
			op.Do("GET", "/v1/dead-letters?tenant="+tn, nil).JSON(t, &dl)
			if len(d.Items) < 2 || len(dl.Items) < 1 {
				return fmt.Errorf("%s: %d deliveries, %d dead letters", tn, len(d.Items), len(dl.Items))
			}
			of[tn].deliveries = []string{d.Items[0].WebhookID, d.Items[1].WebhookID}
			of[tn].dead = []string{dl.Items[0].ID}
			return nil
		})
	}

	c := e.client(e.tenantToken("acme"))
	before := othersState(t, e.db, "acme")
	reqTopic := e.cfg.Kafka.WebhookRequestTopic()
	startOffsets := endOffsets(t, e, reqTopic)

	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	anyID := func(kind func(*res) []string) string {
		return pick(kind(of[pick(tenants)]))
	}
	routes := api.RouteTable()
	var markers []string
	for _, tn := range tenants[1:] {
		r := of[tn]
		markers = append(append(append(append(markers, tn), r.subs...), r.deliveries...), r.apps[1:]...)
	}
	statuses := map[int]int{}
	for i := range 400 {
		rt := routes[rng.IntN(len(routes))]
		if rt.Public {
			continue
		}
		path := rt.Pattern
		for _, p := range []struct {
			name string
			val  func() string
		}{
			{"{uuid}", func() string { return anyID(func(r *res) []string { return r.subs }) }},
			{"{app}", func() string { return anyID(func(r *res) []string { return r.apps }) }},
			{"{webhook_id}", func() string { return anyID(func(r *res) []string { return r.deliveries }) }},
			{"{id}", func() string { return anyID(func(r *res) []string { return r.dead }) }},
			{"{event}", func() string { return pick([]string{"incident.instance.updated", "incident_instance_created"}) }},
		} {
			path = strings.ReplaceAll(path, p.name, p.val())
		}
		if rng.IntN(2) == 0 && rt.Method == "GET" {
			q := []string{"tenant=" + pick(tenants), "subscription=" + anyID(func(r *res) []string { return r.subs }), "application=" + anyID(func(r *res) []string { return r.apps })}
			path += "?" + pick(q)
		}
		var body any
		if rt.Method == "POST" || rt.Method == "PATCH" {
			body = randomBody(rng, rt.Pattern, pick(tenants), anyID(func(r *res) []string { return r.apps }), anyID(func(r *res) []string { return r.subs }), e.recv.URL())
		}
		raw, _ := json.Marshal(body)
		if body == nil {
			raw = nil
		}
		r := c.Raw(rt.Method, path, raw, "application/json")
		statuses[r.Status]++
		if err := e.doc.CheckResponse(rt.Method, strings.SplitN(path, "?", 2)[0], r.Status, r.Header.Get("Content-Type"), r.Body); err != nil {
			t.Errorf("request %d %s %s: %v", i, rt.Method, path, err)
		}
		for _, m := range markers {
			if strings.Contains(string(r.Body), m) && !strings.Contains(path, m) && !strings.Contains(string(raw), m) {
				t.Fatalf("request %d %s %s %s with acme's token answered %d showing %q of another tenant:\n%s", i, rt.Method, path, raw, r.Status, m, r.Body)
			}
		}
	}
	t.Logf("statuses: %v", statuses)
	if statuses[200]+statuses[201]+statuses[202] < 50 || statuses[404] < 20 {
		t.Fatalf("the random requests did not reach both acme's data and others' enough: %v", statuses)
	}
	if after := othersState(t, e.db, "acme"); after != before {
		t.Fatalf("requests with acme's token changed other tenants' rows:\nbefore %s\nafter  %s", before, after)
	}
	// No re-trigger, replay or redrive for another tenant reached the sink.
	for _, rec := range recordsSince(t, e, reqTopic, startOffsets) {
		var j webhook.Job
		if err := json.Unmarshal(rec.Value, &j); err != nil || j.Snapshot.Tenant != "acme" {
			t.Fatalf("a request for another tenant's delivery was produced: %s", rec.Value)
		}
	}
}

type webhookReq = webhooktestRequest
type webhookResp = webhooktestResponse

// randomBody is a plausible body for route, naming resources of any tenant.
func randomBody(rng *rand.Rand, pattern, tenant, app, sub, url string) any {
	switch {
	case pattern == "/v1/applications":
		return map[string]any{"name": fmt.Sprintf("app-%d", rng.IntN(1e6)), "tenant": tenant}
	case pattern == "/v1/subscriptions":
		return map[string]any{"application": app, "tenant": tenant, "event": "incident.instance.updated", "url": url + "/x"}
	case strings.HasSuffix(pattern, "/retrigger"):
		return map[string]any{"root_key": fmt.Sprint(101 + rng.IntN(3))}
	case strings.HasSuffix(pattern, "/replay"):
		return map[string]any{"since": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)}
	case strings.HasSuffix(pattern, "/rotate-secret"):
		return map[string]any{"grace": "0s"}
	case pattern == "/v1/dead-letters/redrive":
		return map[string]any{"tenant": tenant, "subscription": sub, "include_delivered": true}
	case pattern == "/v1/api-keys":
		return map[string]any{"name": "sneaky", "tenant": tenant}
	case pattern == "/v1/subscriptions/{uuid}":
		return map[string]any{"url": url + "/hijacked"}
	}
	return map[string]any{}
}

// othersState is every row of the hook schema that belongs to a tenant other than tenant.
func othersState(t *testing.T, url, tenant string) string {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var s string
	// failing_since is the sink's, not the API's: the running sink marks a failing endpoint of
	// any tenant whenever its health changes.
	err = conn.QueryRow(ctx, `SELECT coalesce((SELECT string_agg((to_jsonb(t) - 'failing_since')::text, ';' ORDER BY id) FROM hook.subscription t WHERE tenant_id <> $1), '') ||
		'|' || coalesce((SELECT string_agg(a::text, ';' ORDER BY id) FROM hook.application a WHERE tenant_id IS DISTINCT FROM $1), '') ||
		'|' || coalesce((SELECT string_agg(k.id || k.name || coalesce(k.tenant_id, ''), ';' ORDER BY id) FROM hook.api_key k), '')`, tenant).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func endOffsets(t *testing.T, e *env, topic string) map[int32]int64 {
	t.Helper()
	out := map[int32]int64{}
	for p := range e.cfg.Kafka.Partitions {
		out[p] = 0
	}
	_ = webhook.ReadTopic(t.Context(), e.cfg.Kafka, topic, func(r *kgo.Record) error {
		out[r.Partition] = r.Offset + 1
		return nil
	})
	return out
}

func recordsSince(t *testing.T, e *env, topic string, from map[int32]int64) []*kgo.Record {
	t.Helper()
	var out []*kgo.Record
	if err := webhook.ReadTopic(t.Context(), e.cfg.Kafka, topic, func(r *kgo.Record) error {
		if r.Offset >= from[r.Partition] {
			out = append(out, r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}
