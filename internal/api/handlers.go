package api

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/catalog"
	"github.com/walhook/walhook/internal/status"
	"github.com/walhook/walhook/sinks/webhook"
)

// fieldNames maps the Admin's field names to the API's JSON members.
var fieldNames = map[string]string{"app": "application", "header": "headers"}

// adminProblem turns an Admin error into its problem.
func adminProblem(err error) *Problem {
	var ie *webhook.InvalidError
	var fe *fieldError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ie):
		field := ie.Field
		if f, ok := fieldNames[field]; ok {
			field = f
		}
		return invalidField(field, "%s", ie.Message)
	case errors.As(err, &fe):
		return invalidField(fe.Field, "%s", fe.Message)
	case errors.Is(err, webhook.ErrUnknownApp):
		return invalidField("application", "%s", strings.TrimPrefix(err.Error(), "webhook: "))
	case errors.Is(err, webhook.ErrAppExists):
		p := problem(http.StatusConflict, "conflict", "Already exists", "%s", strings.TrimPrefix(err.Error(), "webhook: "))
		p.Field = "name"
		return p
	case errors.Is(err, webhook.ErrNotFound), errors.Is(err, webhook.ErrUnknownDeadLetter), errors.Is(err, ErrUnknownKey):
		return notFound("%s", strings.TrimPrefix(strings.TrimPrefix(err.Error(), "webhook: "), "api: "))
	case errors.Is(err, webhook.ErrNoHookSchema):
		return problem(http.StatusServiceUnavailable, "unavailable", "The hook schema is missing", "%v", err)
	}
	return problem(http.StatusInternalServerError, "internal", "The request failed", "%v", err)
}

// Page is one page of a list: the items and, when there are more, the cursor of the next.
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

func cursorOf(n int64) string {
	if n == 0 {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(n, 10)))
}

func parseCursor(q url.Values) (int64, *Problem) {
	c := q.Get("cursor")
	if c == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	n, err2 := strconv.ParseInt(string(b), 10, 64)
	if err != nil || err2 != nil || n <= 0 {
		return 0, badQuery("cursor", "%q is not a cursor of this list; pass the next_cursor of the previous page, or none for the first", c)
	}
	return n, nil
}

func parseLimit(q url.Values) (int, *Problem) {
	l := q.Get("limit")
	if l == "" {
		return webhook.DefaultPageSize, nil
	}
	n, err := strconv.Atoi(l)
	if err != nil || n < 1 || n > webhook.MaxPageSize {
		return 0, badQuery("limit", "%q; use a number from 1 to %d", l, webhook.MaxPageSize)
	}
	return n, nil
}

func parseTime(q url.Values, name string) (time.Time, *Problem) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, badQuery(name, "%q is not an RFC 3339 time; write e.g. 2026-02-03T10:00:00Z", v)
	}
	return t, nil
}

// checkQuery refuses query parameters an operation does not take.
func checkQuery(q url.Values, allowed ...string) *Problem {
	for k := range q {
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return badQuery(k, "unknown parameter %q; this operation takes none", k)
			}
			return badQuery(k, "unknown parameter %q; this operation takes %s", k, strings.Join(allowed, ", "))
		}
	}
	return nil
}

// tenantScope is the tenant a list is restricted to: the token's, or the operator's ?tenant=.
func tenantScope(p Principal, q url.Values) (string, *Problem) {
	t := q.Get("tenant")
	if p.Operator() {
		return t, nil
	}
	if t != "" && t != p.Tenant {
		return "", forbidden("this token belongs to tenant %s and sees only its data; drop tenant= or use an operator key", p.Tenant)
	}
	return p.Tenant, nil
}

// me

type meView struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Tenant   string `json:"tenant"`
	KeyID    int64  `json:"key_id"`
	Version  string `json:"version"`
	Operator bool   `json:"operator"`
}

func (s *Server) me(w http.ResponseWriter, r *http.Request, p Principal) *Problem {
	if prob := checkQuery(r.URL.Query()); prob != nil {
		return prob
	}
	role := "operator"
	if !p.Operator() {
		role = "tenant"
	}
	writeJSON(w, http.StatusOK, meView{Name: p.Name, Role: role, Tenant: p.Tenant, KeyID: p.KeyID, Version: s.version, Operator: p.Operator()})
	return nil
}

// status

const statusCache = 2 * time.Second

func (s *Server) collectStatus(ctx context.Context) (*status.Report, error) {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	if s.statusLast != nil && s.now().Sub(s.statusAt) < statusCache {
		return s.statusLast, nil
	}
	r, err := status.Collect(ctx, s.cfg, status.Options{Timeout: 3 * time.Second})
	if err != nil {
		return nil, err
	}
	r.Check(status.NoThresholds)
	s.statusLast, s.statusAt = r, s.now()
	return r, nil
}

func (s *Server) status(w http.ResponseWriter, r *http.Request, _ Principal) *Problem {
	if prob := checkQuery(r.URL.Query()); prob != nil {
		return prob
	}
	rep, err := s.collectStatus(r.Context())
	if err != nil {
		return problem(http.StatusInternalServerError, "internal", "Status could not be collected", "%v", err)
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

type overviewView struct {
	Tenant                string `json:"tenant"`
	Subscriptions         int    `json:"subscriptions"`
	EnabledSubscriptions  int    `json:"enabled_subscriptions"`
	DisabledSubscriptions int    `json:"disabled_subscriptions"`
	Deliveries            int    `json:"deliveries"`
	OpenDeadLetters       int    `json:"open_dead_letters"`
}

// overview is the counts the console's first page shows, for a tenant or for everyone.
func (s *Server) overview(w http.ResponseWriter, r *http.Request, p Principal) *Problem {
	q := r.URL.Query()
	if prob := checkQuery(q, "tenant"); prob != nil {
		return prob
	}
	tenant, prob := tenantScope(p, q)
	if prob != nil {
		return prob
	}
	v := overviewView{Tenant: tenant}
	var after int64
	for {
		subs, next, err := s.admin.ListPage(r.Context(), webhook.SubscriptionFilter{Tenant: tenant, After: after, Limit: webhook.MaxPageSize})
		if err != nil {
			return adminProblem(err)
		}
		for _, sub := range subs {
			v.Subscriptions++
			if sub.Enabled {
				v.EnabledSubscriptions++
			} else {
				v.DisabledSubscriptions++
			}
		}
		if next == 0 {
			break
		}
		after = next
	}
	v.Deliveries, v.OpenDeadLetters = s.dlog.counts(tenant)
	writeJSON(w, http.StatusOK, v)
	return nil
}

// catalog

const catalogCache = 30 * time.Second

func (s *Server) eventTypeList(ctx context.Context) ([]catalog.EventType, error) {
	s.catalogMu.Lock()
	defer s.catalogMu.Unlock()
	if s.catalogLast != nil && s.now().Sub(s.catalogAt) < catalogCache {
		return s.catalogLast, nil
	}
	cols, err := catalog.Columns(ctx, s.cfg)
	if err != nil {
		return nil, err
	}
	ets, err := catalog.EventTypes(s.cfg, cols)
	if err != nil {
		return nil, err
	}
	s.catalogLast, s.catalogAt = ets, s.now()
	return ets, nil
}

func (s *Server) eventTypes(w http.ResponseWriter, r *http.Request, _ Principal) *Problem {
	if prob := checkQuery(r.URL.Query()); prob != nil {
		return prob
	}
	ets, err := s.eventTypeList(r.Context())
	if err != nil {
		return problem(http.StatusServiceUnavailable, "unavailable", "The event catalog cannot be derived", "%v", err)
	}
	writeJSON(w, http.StatusOK, Page[catalog.EventType]{Items: ets})
	return nil
}

func (s *Server) eventType(w http.ResponseWriter, r *http.Request, _ Principal) *Problem {
	if prob := checkQuery(r.URL.Query()); prob != nil {
		return prob
	}
	ets, err := s.eventTypeList(r.Context())
	if err != nil {
		return problem(http.StatusServiceUnavailable, "unavailable", "The event catalog cannot be derived", "%v", err)
	}
	name := r.PathValue("event")
	var names []string
	for _, et := range ets {
		if et.Event == name || et.Type == name {
			writeJSON(w, http.StatusOK, et)
			return nil
		}
		names = append(names, et.Event)
	}
	return notFound("no event %q in the model; its events are %s (dot or underscore spelling)", name, strings.Join(names, ", "))
}

func (s *Server) asyncAPI(w http.ResponseWriter, r *http.Request, _ Principal) *Problem {
	if prob := checkQuery(r.URL.Query()); prob != nil {
		return prob
	}
	doc, err := Export(r.Context(), s.cfg, s.version)
	if err != nil {
		return problem(http.StatusServiceUnavailable, "unavailable", "The event catalog cannot be derived", "%v", err)
	}
	writeJSON(w, http.StatusOK, doc)
	return nil
}

// Export is the AsyncAPI document of cfg (`walhook catalog export` writes it).
func Export(ctx context.Context, cfg *config.Config, version string) (map[string]any, error) {
	cols, err := catalog.Columns(ctx, cfg)
	if err != nil {
		return nil, err
	}
	ets, err := catalog.EventTypes(cfg, cols)
	if err != nil {
		return nil, err
	}
	topics, err := catalog.TopicSchemas(ctx, cfg, cols)
	if err != nil {
		return nil, err
	}
	return catalog.AsyncAPI(cfg, version, ets, topics)
}

// applications

type appView struct {
	ID                   int64     `json:"id"`
	UUID                 string    `json:"uuid"`
	Name                 string    `json:"name"`
	Tenant               string    `json:"tenant"`
	CreatedAt            time.Time `json:"created_at"`
	Subscriptions        int       `json:"subscriptions"`
	EnabledSubscriptions int       `json:"enabled_subscriptions"`
}

func appOf(a webhook.App) appView {
	return appView{ID: a.ID, UUID: a.UUID, Name: a.Name, Tenant: a.Tenant, CreatedAt: a.CreatedAt.UTC(),
		Subscriptions: a.Subscriptions, EnabledSubscriptions: a.Enabled}
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request, p Principal) *Problem {
	q := r.URL.Query()
	if prob := checkQuery(q, "tenant"); prob != nil {
		return prob
	}
	tenant, prob := tenantScope(p, q)
	if prob != nil {
		return prob
	}
	apps, err := s.admin.AppsOf(r.Context(), tenant)
	if err != nil {
		return adminProblem(err)
	}
	out := make([]appView, len(apps))
	for i, a := range apps {
		out[i] = appOf(a)
	}
	writeJSON(w, http.StatusOK, Page[appView]{Items: out})
	return nil
}

type createAppRequest struct {
	Name   string `json:"name"`
	Tenant string `json:"tenant"`
}

func (s *Server) createApp(w http.ResponseWriter, r *http.Request, p Principal) *Problem {
	var req createAppRequest
	if prob := decodeBody(r, s.cfg.API.MaxBodyBytes, &req); prob != nil {
		return prob
	}
	if !p.Operator() {
		if req.Tenant != "" && req.Tenant != p.Tenant {
			return forbidden("this token belongs to tenant %s: it registers applications of that tenant only; drop tenant", p.Tenant)
		}
		req.Tenant = p.Tenant
	}
	app, err := s.admin.RegisterAppFor(r.Context(), req.Name, req.Tenant)
	if err != nil {
		return adminProblem(err)
	}
	writeJSON(w, http.StatusCreated, appOf(app))
	return nil
}

// findApp resolves an application reference for p: a tenant sees only its own.
func (s *Server) findApp(ctx context.Context, p Principal, ref string) (webhook.App, error) {
	app, err := s.admin.App(ctx, ref)
	if err == nil && !p.Operator() && app.Tenant != p.Tenant {
		err = nil
		app = webhook.App{}
	}
	if err == nil && app.ID == 0 {
		return webhook.App{}, fmt.Errorf("%w %q; GET /v1/applications lists yours", webhook.ErrUnknownApp, ref)
	}
	if errors.Is(err, webhook.ErrUnknownApp) {
		return webhook.App{}, fmt.Errorf("%w %q; GET /v1/applications lists them, POST /v1/applications registers one", webhook.ErrUnknownApp, ref)
	}
	return app, err
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request, p Principal) *Problem {
	if prob := checkQuery(r.URL.Query()); prob != nil {
		return prob
	}
	app, err := s.findApp(r.Context(), p, r.PathValue("app"))
	if errors.Is(err, webhook.ErrUnknownApp) {
		return notFound("%s", strings.TrimPrefix(err.Error(), "webhook: "))
	}
	if err != nil {
		return adminProblem(err)
	}
	writeJSON(w, http.StatusOK, appOf(app))
	return nil
}

// subscriptions

type subscriptionView struct {
	ID             int64             `json:"id"`
	UUID           string            `json:"uuid"`
	ApplicationID  int64             `json:"application_id"`
	Tenant         string            `json:"tenant"`
	EventType      string            `json:"event_type"`
	Event          string            `json:"event"`
	URL            string            `json:"url"`
	Method         string            `json:"method"`
	Headers        map[string]string `json:"headers"`
	Format         string            `json:"format"`
	Ordered        bool              `json:"ordered"`
	Oversize       string            `json:"oversize"`
	Enabled        bool              `json:"enabled"`
	DisabledReason string            `json:"disabled_reason"`
	FailingSince   *time.Time        `json:"failing_since"`
	CreatedAt      time.Time         `json:"created_at"`
	// Secret is only in the answers of create and rotate-secret.
	Secret string `json:"secret,omitempty"`
}

func (s *Server) subOf(sub *webhook.Subscription) subscriptionView {
	v := subscriptionView{ID: sub.ID, UUID: sub.UUID, ApplicationID: sub.AppID, Tenant: sub.Tenant, EventType: sub.EventType,
		Event: s.dotted(sub.EventType), URL: sub.URL, Method: sub.Method, Headers: sub.Headers, Format: sub.Format, Ordered: sub.Ordered,
		Oversize: sub.Oversize, Enabled: sub.Enabled, DisabledReason: sub.DisabledReason, CreatedAt: sub.CreatedAt.UTC()}
	if v.Headers == nil {
		v.Headers = map[string]string{}
	}
	if !sub.FailingSince.IsZero() {
		t := sub.FailingSince.UTC()
		v.FailingSince = &t
	}
	return v
}

// dotted is the subscription key of an event type, from the model.
func (s *Server) dotted(eventType string) string {
	for _, e := range s.admin.Events() {
		if strings.ReplaceAll(e, ".", "_") == eventType {
			return e
		}
	}
	return eventType
}

func (s *Server) listSubs(w http.ResponseWriter, r *http.Request, p Principal) *Problem {
	q := r.URL.Query()
	if prob := checkQuery(q, "tenant", "application", "event", "enabled", "cursor", "limit"); prob != nil {
		return prob
	}
	tenant, prob := tenantScope(p, q)
	if prob != nil {
		return prob
	}
	f := webhook.SubscriptionFilter{Tenant: tenant, EventType: q.Get("event")}
	if a := q.Get("application"); a != "" {
		app, err := s.findApp(r.Context(), p, a)
		if errors.Is(err, webhook.ErrUnknownApp) {
			return badQuery("application", "%s", strings.TrimPrefix(err.Error(), "webhook: "))
		}
		if err != nil {
			return adminProblem(err)
		}
		f.AppID = app.ID
	}
	if e := q.Get("enabled"); e != "" {
		b, err := strconv.ParseBool(e)
		if err != nil {
			return badQuery("enabled", "%q; use true or false", e)
		}
		f.Enabled = &b
	}
	if f.After, prob = parseCursor(q); prob != nil {
		return prob
	}
	if f.Limit, prob = parseLimit(q); prob != nil {
		return prob
	}
	subs, next, err := s.admin.ListPage(r.Context(), f)
	var ie *webhook.InvalidError
	if errors.As(err, &ie) {
		return badQuery(ie.Field, "%s", ie.Message)
	}
	if err != nil {
		return adminProblem(err)
	}
	out := make([]subscriptionView, len(subs))
	for i, sub := range subs {
		out[i] = s.subOf(sub)
	}
	writeJSON(w, http.StatusOK, Page[subscriptionView]{Items: out, NextCursor: cursorOf(next)})
	return nil
}

type createSubRequest struct {
	Application string            `json:"application"`
	Tenant      string            `json:"tenant"`
	Event       string            `json:"event"`
	URL         string            `json:"url"`
	Method      string            `json:"method"`
	Headers     map[string]string `json:"headers"`
	Format      string            `json:"format"`
	Ordered     bool              `json:"ordered"`
	Oversize    string            `json:"oversize"`
}

func (s *Server) createSub(w http.ResponseWriter, r *http.Request, p Principal) *Problem {
	var req createSubRequest
	if prob := decodeBody(r, s.cfg.API.MaxBodyBytes, &req); prob != nil {
		return prob
	}
	if !p.Operator() {
		if req.Tenant != "" && req.Tenant != p.Tenant {
			p := forbidden("this token belongs to tenant %s: it subscribes that tenant only; drop tenant", p.Tenant)
			p.Field = "tenant"
			return p
		}
		req.Tenant = p.Tenant
	}
	if strings.TrimSpace(req.Application) == "" {
		return invalidField("application", "required: the id, uuid or name of the receiving application (GET /v1/applications lists them)")
	}
	app, err := s.findApp(r.Context(), p, req.Application)
	if err != nil {
		return adminProblem(err)
	}
	sub, err := s.admin.Subscribe(r.Context(), webhook.SubscribeRequest{AppID: app.ID, Tenant: req.Tenant, Event: req.Event, URL: req.URL,
		Method: req.Method, Headers: req.Headers, Format: req.Format, Ordered: req.Ordered, Oversize: req.Oversize})
	if err != nil {
		return adminProblem(err)
	}
	v := s.subOf(sub)
	v.Secret = sub.Secret
	w.Header().Set("Location", "/v1/subscriptions/"+sub.UUID)
	writeJSON(w, http.StatusCreated, v)
	return nil
}

// findSub loads a subscription for p; another tenant's is as unknown as a missing one.
func (s *Server) findSub(ctx context.Context, p Principal, uuid string) (*webhook.Subscription, *Problem) {
	sub, err := s.admin.Get(ctx, uuid)
	if errors.Is(err, webhook.ErrUnknownSubscription) || (err == nil && !p.Operator() && sub.Tenant != p.Tenant) {
		return nil, notFound("no subscription %q; GET /v1/subscriptions lists them", uuid)
	}
	if err != nil {
		return nil, adminProblem(err)
	}
	return sub, nil
}

func (s *Server) getSub(w http.ResponseWriter, r *http.Request, p Principal) *Problem {
	if prob := checkQuery(r.URL.Query()); prob != nil {
		return prob
	}
	sub, prob := s.findSub(r.Context(), p, r.PathValue("uuid"))
	if prob != nil {
		return prob
	}
	writeJSON(w, http.StatusOK, s.subOf(sub))
	return nil
}

type updateSubRequest struct {
	URL      *string            `json:"url"`
	Method   *string            `json:"method"`
	Headers  *map[string]string `json:"headers"`
	Format   *string            `json:"format"`
	Ordered  *bool              `json:"ordered"`
	Oversize *string            `json:"oversize"`
}

func (s *Server) updateSub(w http.ResponseWriter, r *http.Request, p Principal) *Problem {
	var req updateSubRequest
	if prob := decodeBody(r, s.cfg.API.MaxBodyBytes, &req); prob != nil {
		return prob
	}
	sub, prob := s.findSub(r.Context(), p, r.PathValue("uuid"))
	if prob != nil {
		return prob
	}
	u := webhook.UpdateRequest{URL: req.URL, Method: req.Method, Format: req.Format, Ordered: req.Ordered, Oversize: req.Oversize}
	if req.Headers != nil {
		u.Headers = *req.Headers
		if u.Headers == nil {
			u.Headers = map[string]string{}
		}
	}
	if u.URL == nil && u.Method == nil && u.Headers == nil && u.Format == nil && u.Ordered == nil && u.Oversize == nil {
		return invalidField("url", "nothing to change; send at least one of url, method, headers, format, ordered, oversize")
	}
	updated, err := s.admin.Update(r.Context(), sub.UUID, u)
	if err != nil {
		return adminProblem(err)
	}
	writeJSON(w, http.StatusOK, s.subOf(updated))
	return nil
}

// disableSub is DELETE and POST .../disable: the contract's unsubscribe disables, it never
// deletes (the row and its delivery history stay; enable undoes it).
func (s *Server) disableSub(w http.ResponseWriter, r *http.Request, p Principal) *Problem {
	if prob := checkQuery(r.URL.Query()); prob != nil {
		return prob
	}
	sub, prob := s.findSub(r.Context(), p, r.PathValue("uuid"))
	if prob != nil {
		return prob
	}
	if err := s.admin.Unsubscribe(r.Context(), sub.UUID); err != nil {
		return adminProblem(err)
	}
	sub, prob = s.findSub(r.Context(), p, sub.UUID)
	if prob != nil {
		return prob
	}
	writeJSON(w, http.StatusOK, s.subOf(sub))
	return nil
}

func (s *Server) enableSub(w http.ResponseWriter, r *http.Request, p Principal) *Problem {
	if prob := checkQuery(r.URL.Query()); prob != nil {
		return prob
	}
	sub, prob := s.findSub(r.Context(), p, r.PathValue("uuid"))
	if prob != nil {
		return prob
	}
	enabled, err := s.admin.Enable(r.Context(), sub.UUID)
	if err != nil {
		return adminProblem(err)
	}
	writeJSON(w, http.StatusOK, s.subOf(enabled))
	return nil
}

type rotateRequest struct {
	// Grace is a Go duration ("24h"); default deliver.rotation_grace.
	Grace *string `json:"grace"`
}

type rotateView struct {
	UUID           string    `json:"uuid"`
	Secret         string    `json:"secret"`
	PreviousUntil  time.Time `json:"previous_secret_valid_until"`
	GracePeriodSec float64   `json:"grace_seconds"`
}

func (s *Server) rotateSecret(w http.ResponseWriter, r *http.Request, p Principal) *Problem {
	var req rotateRequest
	if r.ContentLength != 0 {
		if prob := decodeBody(r, s.cfg.API.MaxBodyBytes, &req); prob != nil {
			return prob
		}
	}
	grace := s.cfg.Deliver.RotationGrace
	if req.Grace != nil {
		d, err := time.ParseDuration(*req.Grace)
		if err != nil {
			return invalidField("grace", "%q is not a duration; write e.g. 24h, 30m or 0s", *req.Grace)
		}
		grace = d
	}
	sub, prob := s.findSub(r.Context(), p, r.PathValue("uuid"))
	if prob != nil {
		return prob
	}
	secret, err := s.admin.RotateSecret(r.Context(), sub.UUID, grace)
	if err != nil {
		return adminProblem(err)
	}
	writeJSON(w, http.StatusOK, rotateView{UUID: sub.UUID, Secret: secret, PreviousUntil: s.now().Add(grace).UTC(), GracePeriodSec: grace.Seconds()})
	return nil
}

type retriggerRequest struct {
	RootKey string `json:"root_key"`
	Version int64  `json:"version"`
}

type requestedView struct {
	Requested int    `json:"requested"`
	WebhookID string `json:"webhook_id,omitempty"`
	Version   int64  `json:"version,omitempty"`
}

func (s *Server) retrigger(w http.ResponseWriter, r *http.Request, p Principal) *Problem {
	var req retriggerRequest
	if prob := decodeBody(r, s.cfg.API.MaxBodyBytes, &req); prob != nil {
		return prob
	}
	if strings.TrimSpace(req.RootKey) == "" {
		return invalidField("root_key", "required: the key of the root to deliver again, e.g. \"134\"")
	}
	if req.Version < 0 {
		return invalidField("version", "%d; give a version (1, 2, …) or leave it out for the latest", req.Version)
	}
	sub, prob := s.findSub(r.Context(), p, r.PathValue("uuid"))
	if prob != nil {
		return prob
	}
	snap, err := webhook.FindSnapshot(r.Context(), s.cfg, s.reg, sub, req.RootKey, req.Version)
	if errors.Is(err, webhook.ErrNotFound) {
		return notFound("no snapshot of %s key %q (version %d; 0 is the latest) for this subscription's tenant in the snapshot topic", sub.EventType, req.RootKey, req.Version)
	}
	if err != nil {
		return adminProblem(err)
	}
	if err := webhook.Retrigger(r.Context(), s.kafka, s.cfg.Kafka, sub, snap); err != nil {
		return adminProblem(err)
	}
	writeJSON(w, http.StatusAccepted, requestedView{Requested: 1, Version: snap.Version,
		WebhookID: webhook.MessageID(sub.UUID, snap.RootType, snap.Key, snap.Version)})
	return nil
}

type replayRequest struct {
	Since string `json:"since"`
	Until string `json:"until"`
}

func parseBodyTime(field, v string) (time.Time, *Problem) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, invalidField(field, "%q is not an RFC 3339 time; write e.g. 2026-02-03T10:00:00Z", v)
	}
	return t, nil
}

func (s *Server) replay(w http.ResponseWriter, r *http.Request, p Principal) *Problem {
	var req replayRequest
	if prob := decodeBody(r, s.cfg.API.MaxBodyBytes, &req); prob != nil {
		return prob
	}
	if req.Since == "" {
		return invalidField("since", "required: the start of the window (RFC 3339); snapshots committed at or after it are delivered again")
	}
	since, prob := parseBodyTime("since", req.Since)
	if prob != nil {
		return prob
	}
	until := s.now()
	if req.Until != "" {
		if until, prob = parseBodyTime("until", req.Until); prob != nil {
			return prob
		}
	}
	sub, prob := s.findSub(r.Context(), p, r.PathValue("uuid"))
	if prob != nil {
		return prob
	}
	n, err := webhook.ReplayWindow(r.Context(), s.kafka, s.cfg, s.reg, sub, since, until)
	if err != nil {
		return adminProblem(err)
	}
	writeJSON(w, http.StatusAccepted, requestedView{Requested: n})
	return nil
}

// deliveries

func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request, p Principal) *Problem {
	q := r.URL.Query()
	if prob := checkQuery(q, "tenant", "subscription", "event_type", "outcome", "root_key", "cursor", "limit"); prob != nil {
		return prob
	}
	tenant, prob := tenantScope(p, q)
	if prob != nil {
		return prob
	}
	f := deliveryFilter{tenant: tenant, sub: q.Get("subscription"), eventType: strings.ReplaceAll(q.Get("event_type"), ".", "_"),
		outcome: q.Get("outcome"), rootKey: q.Get("root_key")}
	outcomes := []string{webhook.OutcomeDelivered, webhook.OutcomeRetry, webhook.OutcomeDeadLetter, webhook.OutcomeGone,
		webhook.OutcomeDisabledTarget, webhook.OutcomeUnknown}
	if f.outcome != "" && !slices.Contains(outcomes, f.outcome) {
		return badQuery("outcome", "%q; use one of %s", f.outcome, strings.Join(outcomes, ", "))
	}
	if f.before, prob = parseCursor(q); prob != nil {
		return prob
	}
	if f.limit, prob = parseLimit(q); prob != nil {
		return prob
	}
	items, next := s.dlog.listDeliveries(f)
	if items == nil {
		items = []deliveryView{}
	}
	writeJSON(w, http.StatusOK, Page[deliveryView]{Items: items, NextCursor: cursorOf(next)})
	return nil
}

func (s *Server) getDelivery(w http.ResponseWriter, r *http.Request, p Principal) *Problem {
	if prob := checkQuery(r.URL.Query()); prob != nil {
		return prob
	}
	id := r.PathValue("webhook_id")
	d, ok := s.dlog.getDelivery(id)
	if !ok || (!p.Operator() && d.Tenant != p.Tenant) {
		return notFound("no delivery %q in the delivery log (it keeps the newest api.log_size deliveries of the attempt-log topic); GET /v1/deliveries lists them", id)
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

type statsView struct {
	Tenant          string   `json:"tenant"`
	IntervalSeconds int      `json:"interval_seconds"`
	Buckets         []bucket `json:"buckets"`
}

func (s *Server) deliveryStats(w http.ResponseWriter, r *http.Request, p Principal) *Problem {
	q := r.URL.Query()
	if prob := checkQuery(q, "tenant", "seconds"); prob != nil {
		return prob
	}
	tenant, prob := tenantScope(p, q)
	if prob != nil {
		return prob
	}
	seconds := 120
	if v := q.Get("seconds"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > int(sampleWindow/time.Second) {
			return badQuery("seconds", "%q; use 1 to %d", v, int(sampleWindow/time.Second))
		}
		seconds = n
	}
	writeJSON(w, http.StatusOK, statsView{Tenant: tenant, IntervalSeconds: 1, Buckets: s.dlog.stats(tenant, seconds, s.now())})
	return nil
}

// dead letters

func (s *Server) deadFilter(p Principal, q url.Values) (deadFilter, *Problem) {
	tenant, prob := tenantScope(p, q)
	if prob != nil {
		return deadFilter{}, prob
	}
	f := deadFilter{tenant: tenant, sub: q.Get("subscription"), eventType: strings.ReplaceAll(q.Get("event_type"), ".", "_"), state: q.Get("state")}
	if f.state != "" && !slices.Contains([]string{stateDead, stateRetrying, stateDelivered}, f.state) {
		return deadFilter{}, badQuery("state", "%q; use dead, retrying or delivered", f.state)
	}
	if f.since, prob = parseTime(q, "since"); prob != nil {
		return deadFilter{}, prob
	}
	if f.until, prob = parseTime(q, "until"); prob != nil {
		return deadFilter{}, prob
	}
	return f, nil
}

func (s *Server) listDead(w http.ResponseWriter, r *http.Request, p Principal) *Problem {
	q := r.URL.Query()
	if prob := checkQuery(q, "tenant", "subscription", "event_type", "state", "since", "until", "cursor", "limit"); prob != nil {
		return prob
	}
	f, prob := s.deadFilter(p, q)
	if prob != nil {
		return prob
	}
	if f.before, prob = parseCursor(q); prob != nil {
		return prob
	}
	if f.limit, prob = parseLimit(q); prob != nil {
		return prob
	}
	items, next := s.dlog.listDead(f)
	if items == nil {
		items = []deadLetterView{}
	}
	writeJSON(w, http.StatusOK, Page[deadLetterView]{Items: items, NextCursor: cursorOf(next)})
	return nil
}

func (s *Server) findDead(ctx context.Context, p Principal, id string) (webhook.DeadLetter, *Problem) {
	part, off, err := webhook.ParseDeadLetterID(id)
	if err != nil {
		var ie *webhook.InvalidError
		if errors.As(err, &ie) {
			return webhook.DeadLetter{}, notFound("%s", ie.Message)
		}
		return webhook.DeadLetter{}, adminProblem(err)
	}
	d, err := webhook.DeadLetterAt(ctx, s.cfg.Kafka, part, off)
	if errors.Is(err, webhook.ErrUnknownDeadLetter) || (err == nil && !p.Operator() && d.Job.Snapshot.Tenant != p.Tenant) {
		return webhook.DeadLetter{}, notFound("no dead letter %q; GET /v1/dead-letters lists them", id)
	}
	if err != nil {
		return webhook.DeadLetter{}, adminProblem(err)
	}
	return d, nil
}

func (s *Server) getDead(w http.ResponseWriter, r *http.Request, p Principal) *Problem {
	if prob := checkQuery(r.URL.Query()); prob != nil {
		return prob
	}
	d, prob := s.findDead(r.Context(), p, r.PathValue("id"))
	if prob != nil {
		return prob
	}
	writeJSON(w, http.StatusOK, deadView(d, s.dlog.state(d), true))
	return nil
}

func (s *Server) redriveOne(w http.ResponseWriter, r *http.Request, p Principal) *Problem {
	if prob := checkQuery(r.URL.Query()); prob != nil {
		return prob
	}
	d, prob := s.findDead(r.Context(), p, r.PathValue("id"))
	if prob != nil {
		return prob
	}
	n, err := webhook.Redrive(r.Context(), s.kafka, s.cfg.Kafka, d)
	if err != nil {
		return adminProblem(err)
	}
	writeJSON(w, http.StatusAccepted, requestedView{Requested: n, WebhookID: d.WebhookID(), Version: d.Job.Snapshot.Version})
	return nil
}

type redriveRequest struct {
	Tenant       string `json:"tenant"`
	Subscription string `json:"subscription"`
	EventType    string `json:"event_type"`
	Since        string `json:"since"`
	Until        string `json:"until"`
	// IncludeDelivered also redrives dead letters a later attempt delivered.
	IncludeDelivered bool `json:"include_delivered"`
}

func (s *Server) redriveMatching(w http.ResponseWriter, r *http.Request, p Principal) *Problem {
	var req redriveRequest
	if prob := decodeBody(r, s.cfg.API.MaxBodyBytes, &req); prob != nil {
		return prob
	}
	f := deadFilter{tenant: req.Tenant, sub: req.Subscription, eventType: strings.ReplaceAll(req.EventType, ".", "_")}
	if !p.Operator() {
		if req.Tenant != "" && req.Tenant != p.Tenant {
			prob := forbidden("this token belongs to tenant %s: it redrives that tenant's dead letters only; drop tenant", p.Tenant)
			prob.Field = "tenant"
			return prob
		}
		f.tenant = p.Tenant
	}
	var prob *Problem
	if req.Since != "" {
		if f.since, prob = parseBodyTime("since", req.Since); prob != nil {
			return prob
		}
	}
	if req.Until != "" {
		if f.until, prob = parseBodyTime("until", req.Until); prob != nil {
			return prob
		}
	}
	n, err := webhook.RedriveMatching(r.Context(), s.kafka, s.cfg.Kafka, func(d webhook.DeadLetter) bool {
		return f.match(d, d.Job.Snapshot.Tenant) && (req.IncludeDelivered || s.dlog.state(d) != stateDelivered)
	})
	if err != nil {
		return adminProblem(err)
	}
	writeJSON(w, http.StatusAccepted, requestedView{Requested: n})
	return nil
}

// API keys

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, _ Principal) *Problem {
	if prob := checkQuery(r.URL.Query()); prob != nil {
		return prob
	}
	keys, err := s.keys.List(r.Context())
	if err != nil {
		return adminProblem(err)
	}
	writeJSON(w, http.StatusOK, Page[Key]{Items: keys})
	return nil
}

type createKeyRequest struct {
	Name      string `json:"name"`
	Tenant    string `json:"tenant"`
	ExpiresIn string `json:"expires_in"`
}

type createdKeyView struct {
	Key
	Secret string `json:"key"`
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, _ Principal) *Problem {
	var req createKeyRequest
	if prob := decodeBody(r, s.cfg.API.MaxBodyBytes, &req); prob != nil {
		return prob
	}
	var ttl time.Duration
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil {
			return invalidField("expires_in", "%q is not a duration; write e.g. 720h", req.ExpiresIn)
		}
		ttl = d
	}
	secret, key, err := s.keys.Create(r.Context(), req.Name, req.Tenant, ttl)
	if err != nil {
		return adminProblem(err)
	}
	writeJSON(w, http.StatusCreated, createdKeyView{Key: key, Secret: secret})
	return nil
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request, _ Principal) *Problem {
	if prob := checkQuery(r.URL.Query()); prob != nil {
		return prob
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return notFound("no API key %q; ids are numbers (GET /v1/api-keys lists them)", r.PathValue("id"))
	}
	key, err := s.keys.Revoke(r.Context(), id)
	if err != nil {
		return adminProblem(err)
	}
	writeJSON(w, http.StatusOK, key)
	return nil
}

// tenantOf finds the tenant of a subscription for attempt records written before they carried
// one; "" when it is unknown (such deliveries are shown to operators only).
func (s *Server) tenantOf(ctx context.Context, sub string) string {
	s.tenantsMu.Lock()
	t, ok := s.tenants[sub]
	s.tenantsMu.Unlock()
	if ok {
		return t
	}
	if got, err := s.admin.Get(ctx, sub); err == nil {
		t = got.Tenant
	}
	s.tenantsMu.Lock()
	s.tenants[sub] = t
	s.tenantsMu.Unlock()
	return t
}
