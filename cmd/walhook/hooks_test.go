package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/pgtest"
)

func runHooks(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newHooksCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestHooksCommands(t *testing.T) {
	url := pgtest.NewDatabase(t, pgtest.Start(t))
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(t.Context(), demo.SchemaSQL); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(t.Context())
	t.Setenv("WALHOOK_PG_URL", url)

	out, err := runHooks(t, "register-app", "--name", "crm")
	if err != nil || !strings.Contains(out, "id: ") {
		t.Fatalf("register-app: %q %v", out, err)
	}
	appID := regexp.MustCompile(`id: (\d+)`).FindStringSubmatch(out)[1]
	out, err = runHooks(t, "subscribe", "--app", appID, "--tenant", "acme", "--event", "incident.instance.updated",
		"--url", "https://hooks.example.com/x", "--header", "X-Team: blue", "--format", "envelope", "--ordered")
	if err != nil || !strings.Contains(out, "secret: whsec_") {
		t.Fatalf("subscribe: %q %v", out, err)
	}
	uuid := regexp.MustCompile(`uuid: (\S+)`).FindStringSubmatch(out)[1]
	if out, err = runHooks(t, "rotate-secret", "--uuid", uuid); err != nil || !strings.Contains(out, "secret: whsec_") {
		t.Fatalf("rotate-secret: %q %v", out, err)
	}
	if out, err = runHooks(t, "unsubscribe", "--uuid", uuid); err != nil {
		t.Fatalf("unsubscribe: %q %v", out, err)
	}
	out, err = runHooks(t, "list")
	if err != nil || !strings.Contains(out, "incident_instance_updated") || !strings.Contains(out, "unsubscribed") || strings.Contains(out, "whsec_") {
		t.Fatalf("list: %q %v", out, err)
	}
	if _, err := runHooks(t, "unsubscribe", "--uuid", "00000000-0000-0000-0000-000000000000"); err == nil {
		t.Fatal("unsubscribe of an unknown uuid succeeded")
	}
	if _, err := runHooks(t, "subscribe", "--app", appID, "--tenant", "acme", "--event", "nope", "--url", "https://x"); err == nil {
		t.Fatal("subscribe with a bad event succeeded")
	}
}
