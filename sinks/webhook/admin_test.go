package webhook_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/sinks/webhook"
)

// adminWithModel opens an Admin over a fresh database with the hook schema, checking against
// the demo model with the deliver section given.
func adminWithModel(t *testing.T, deliver string) (*webhook.Admin, string) {
	t.Helper()
	url := pgtest.NewDatabase(t, pgtest.Start(t))
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(t.Context(), demo.SchemaSQL); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(t.Context())
	cfg, err := config.ParseWith([]byte("postgres: {url: x}\nkafka: {brokers: [k:1]}\ndeliver: "+deliver+"\n"+demo.ModelYAML), "test", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := webhook.OpenAdmin(t.Context(), url, webhook.WithConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a, url
}

func wantInvalid(t *testing.T, err error, field, msg string) {
	t.Helper()
	var ie *webhook.InvalidError
	if !errors.As(err, &ie) || ie.Field != field || !strings.Contains(ie.Message, msg) {
		t.Errorf("want the %s refused with %q, got %v", field, msg, err)
	}
}

func TestAdminRefusesBadSubscriptionsUpFront(t *testing.T) {
	ctx := t.Context()
	a, _ := adminWithModel(t, "{allow_cidrs: [10.9.0.0/16]}")
	app, err := a.RegisterApp(ctx, "crm")
	if err != nil {
		t.Fatal(err)
	}
	ok := webhook.SubscribeRequest{App: "crm", Tenant: "acme", Event: "incident.instance.updated", URL: "https://93.184.215.14/hook"}
	with := func(edit func(*webhook.SubscribeRequest)) webhook.SubscribeRequest { r := ok; edit(&r); return r }
	for _, tc := range []struct {
		name  string
		req   webhook.SubscribeRequest
		field string
		msg   string
	}{
		{"no host", with(func(r *webhook.SubscribeRequest) { r.URL = "https://" }), "url", "has no host"},
		{"user info", with(func(r *webhook.SubscribeRequest) { r.URL = "https://user:s3cret@93.184.215.14/hook" }), "url", "carries a user name or password"},
		{"plain http", with(func(r *webhook.SubscribeRequest) { r.URL = "http://93.184.215.14/hook" }), "url", "is not HTTPS"},
		{"other scheme", with(func(r *webhook.SubscribeRequest) { r.URL = "ftp://93.184.215.14/hook" }), "url", `scheme "ftp"`},
		{"loopback v4", with(func(r *webhook.SubscribeRequest) { r.URL = "https://127.0.0.1/hook" }), "url", "loopback"},
		{"loopback v6", with(func(r *webhook.SubscribeRequest) { r.URL = "https://[::1]/hook" }), "url", "loopback"},
		{"localhost", with(func(r *webhook.SubscribeRequest) { r.URL = "https://localhost:8443/hook" }), "url", "localhost resolves to"},
		{"private", with(func(r *webhook.SubscribeRequest) { r.URL = "https://10.0.0.7/hook" }), "url", "add it to deliver.allow_cidrs"},
		{"metadata", with(func(r *webhook.SubscribeRequest) { r.URL = "https://169.254.169.254/latest" }), "url", "link-local"},
		{"root not in the model", with(func(r *webhook.SubscribeRequest) { r.Event = "candidate.created" }), "event",
			"its events are incident.instance.created, incident.instance.updated, incident.instance.deleted"},
		{"wrong verb", with(func(r *webhook.SubscribeRequest) { r.Event = "incident.instance.resolved" }), "event", "incident.instance.updated"},
		{"no tenant", with(func(r *webhook.SubscribeRequest) { r.Tenant = " " }), "tenant", "every subscription belongs to one tenant"},
		{"method", with(func(r *webhook.SubscribeRequest) { r.Method = "GET" }), "method", "use POST, PUT or PATCH"},
		{"format", with(func(r *webhook.SubscribeRequest) { r.Format = "xml" }), "format", "use bare"},
		{"oversize", with(func(r *webhook.SubscribeRequest) { r.Oversize = "drop" }), "oversize", "is not thin or dead_letter"},
		{"reserved header", with(func(r *webhook.SubscribeRequest) { r.Headers = map[string]string{"Webhook-Signature": "x"} }), "header", "set by walhook"},
		{"bad header name", with(func(r *webhook.SubscribeRequest) { r.Headers = map[string]string{"X Team": "x"} }), "header", "not a valid header name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Subscribe(ctx, tc.req)
			wantInvalid(t, err, tc.field, tc.msg)
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
	if _, err := a.Subscribe(ctx, with(func(r *webhook.SubscribeRequest) { r.App = "999" })); !errors.Is(err, webhook.ErrUnknownApp) ||
		!strings.Contains(err.Error(), "walhook hooks apps") {
		t.Errorf("unknown app: %v", err)
	}
	if _, err := a.RegisterApp(ctx, "crm"); !errors.Is(err, webhook.ErrAppExists) || strings.Contains(err.Error(), "SQLSTATE") {
		t.Errorf("duplicate app: %v", err)
	}

	// What passes: a public address, an allow-listed private one, the underscore spelling, the
	// app by id; a name that does not resolve passes with a warning.
	for _, r := range []webhook.SubscribeRequest{ok,
		with(func(r *webhook.SubscribeRequest) {
			r.URL = "https://10.9.1.2/hook"
			r.Event = "incident_instance_created"
		}),
		with(func(r *webhook.SubscribeRequest) {
			r.App = ""
			r.AppID = app.ID
			r.Headers = map[string]string{"X-Team": "blue"}
		}),
	} {
		if _, err := a.Subscribe(ctx, r); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
	warnings, err := a.CheckTarget(ctx, "https://hooks.invalid/x")
	if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "does not resolve") {
		t.Errorf("an unresolvable name: warnings %v, err %v; want one warning", warnings, err)
	}
	apps, err := a.Apps(ctx)
	if err != nil || len(apps) != 1 || apps[0].Name != "crm" || apps[0].Subscriptions != 3 || apps[0].Enabled != 3 {
		t.Errorf("apps: %+v %v", apps, err)
	}
}

func TestAdminLoopbackWhenAllowed(t *testing.T) {
	a, _ := adminWithModel(t, "{allow_loopback: true}")
	for _, u := range []string{"http://127.0.0.1:8080/x", "https://[::1]/x", "http://localhost:9/x"} {
		if _, err := a.CheckTarget(t.Context(), u); err != nil {
			t.Errorf("%s with allow_loopback: %v", u, err)
		}
	}
	if _, err := a.CheckTarget(t.Context(), "http://10.0.0.1/x"); err == nil {
		t.Error("plain http to a private address allowed")
	}
}

func TestAdminUpdateEnable(t *testing.T) {
	ctx := t.Context()
	a, url := adminWithModel(t, "{}")
	if _, err := a.RegisterApp(ctx, "crm"); err != nil {
		t.Fatal(err)
	}
	sub, err := a.Subscribe(ctx, webhook.SubscribeRequest{App: "crm", Tenant: "acme", Event: "incident.instance.updated",
		URL: "https://93.184.215.14/a", Headers: map[string]string{"X-Team": "blue"}})
	if err != nil {
		t.Fatal(err)
	}
	newURL, put, ordered := "https://93.184.215.14/b?token=s3cret", "put", true
	got, err := a.Update(ctx, sub.UUID, webhook.UpdateRequest{URL: &newURL, Method: &put, Ordered: &ordered})
	if err != nil {
		t.Fatal(err)
	}
	if got.URL != newURL || got.Method != "PUT" || !got.Ordered || got.Headers["X-Team"] != "blue" || got.Secret != sub.Secret {
		t.Errorf("updated: %+v; want the new URL, PUT, ordered, the header and the secret kept", got)
	}
	if sub.Oversize != webhook.OversizeDeadLetter || got.Oversize != webhook.OversizeDeadLetter {
		t.Errorf("oversize %q, after an update %q; want the default dead_letter kept", sub.Oversize, got.Oversize)
	}
	thin := "THIN"
	if got, err = a.Update(ctx, sub.UUID, webhook.UpdateRequest{Oversize: &thin}); err != nil || got.Oversize != webhook.OversizeThin {
		t.Errorf("update oversize to thin: %v, %+v", err, got)
	}
	if reread, err := a.Get(ctx, sub.UUID); err != nil || reread.Oversize != webhook.OversizeThin || reread.URL != newURL {
		t.Errorf("stored after the oversize update: %v, %+v", err, reread)
	}
	if strings.Contains(got.String(), "s3cret") {
		t.Errorf("String() shows the token: %s", got)
	}
	bad := "https://127.0.0.1/c"
	if _, err := a.Update(ctx, sub.UUID, webhook.UpdateRequest{URL: &bad}); err == nil {
		t.Error("update to a loopback URL accepted")
	}
	if _, err := a.Update(ctx, sub.UUID, webhook.UpdateRequest{}); err == nil {
		t.Error("an empty update accepted")
	}
	if _, err := a.Update(ctx, "00000000-0000-0000-0000-000000000000", webhook.UpdateRequest{URL: &newURL}); !errors.Is(err, webhook.ErrUnknownSubscription) {
		t.Errorf("update of an unknown uuid: %v", err)
	}

	// A subscription the sink disabled (auto-disable) is enabled again with its failure state
	// cleared.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `UPDATE hook.subscription SET is_enabled = false, disabled_at = now(), disabled_reason = 'auto',
		failing_since = now() - interval '3 days' WHERE uuid::text = $1`, sub.UUID); err != nil {
		t.Fatal(err)
	}
	got, err = a.Enable(ctx, sub.UUID)
	if err != nil || !got.Enabled || got.DisabledReason != "" || !got.FailingSince.IsZero() {
		t.Fatalf("enable: %+v %v", got, err)
	}
	// A stored URL the policy now refuses is not enabled again.
	if _, err := conn.Exec(ctx, `UPDATE hook.subscription SET is_enabled = false, url = 'https://10.0.0.1/x' WHERE uuid::text = $1`, sub.UUID); err != nil {
		t.Fatal(err)
	}
	_, err = a.Enable(ctx, sub.UUID)
	wantInvalid(t, err, "url", "hooks update --url")
	if _, err := a.RotateSecret(ctx, sub.UUID, -time.Second); err == nil {
		t.Error("a negative grace accepted")
	}
}

func TestAdminWithoutHookSchema(t *testing.T) {
	url := pgtest.NewDatabase(t, pgtest.Start(t))
	a, err := webhook.OpenAdmin(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for name, err := range map[string]error{
		"list": func() error { _, err := a.List(t.Context()); return err }(),
		"apps": func() error { _, err := a.Apps(t.Context()); return err }(),
		"app":  func() error { _, err := a.RegisterApp(t.Context(), "x"); return err }(),
	} {
		if !errors.Is(err, webhook.ErrNoHookSchema) || strings.Contains(err.Error(), "SQLSTATE") || !strings.Contains(err.Error(), "schema.sql") {
			t.Errorf("%s without the hook schema: %v", name, err)
		}
	}
}
