package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

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

// demoDatabase is a fresh database of the test cluster with the demo schema.
func demoDatabase(t *testing.T) string {
	t.Helper()
	url := pgtest.NewDatabase(t, pgtest.Start(t))
	execSQL(t, url, demo.SchemaSQL)
	return url
}

// hooksDatabase is a fresh database with the demo schema and a config pointing at it with the
// demo model and the production target policy (no loopback).
func hooksDatabase(t *testing.T) (url, cfgPath string) {
	t.Helper()
	url = demoDatabase(t)
	cfgPath = writeConfig(t, fmt.Sprintf("postgres: {url: %q}\nkafka: {brokers: [127.0.0.1:1]}\n%s", url, demo.ModelYAML))
	unsetEnv(t, "WALHOOK_CONFIG", "WALHOOK_PG_URL", "WALHOOK_BROKERS", "WALHOOK_REGISTRY_URL")
	return url, cfgPath
}

// unsetEnv removes the developer's own variables (set after sourcing dev.env, say) for the
// test; a variable set but empty would still count as set.
func unsetEnv(t *testing.T, keys ...string) {
	t.Helper()
	for _, k := range keys {
		t.Setenv(k, "")
		if err := os.Unsetenv(k); err != nil {
			t.Fatal(err)
		}
	}
}

func TestHooksCommands(t *testing.T) {
	url, cfg := hooksDatabase(t)
	out, err := runHooks(t, "register-app", "--config", cfg, "--name", "crm")
	if err != nil || !strings.Contains(out, "id: ") {
		t.Fatalf("register-app: %q %v", out, err)
	}
	out, err = runHooks(t, "subscribe", "--config", cfg, "--app", "crm", "--tenant", "acme", "--event", "incident.instance.updated",
		"--url", "https://93.184.215.14/x?token=s3cret", "--header", "X-Team: blue", "--format", "envelope", "--ordered")
	if err != nil || !strings.Contains(out, "secret: whsec_") || strings.Contains(out, "s3cret") {
		t.Fatalf("subscribe: %q %v", out, err)
	}
	uuid := regexp.MustCompile(`uuid: (\S+)`).FindStringSubmatch(out)[1]
	if out, err = runHooks(t, "rotate-secret", "--config", cfg, "--uuid", uuid); err != nil || !strings.Contains(out, "secret: whsec_") {
		t.Fatalf("rotate-secret: %q %v", out, err)
	}
	if out, err = runHooks(t, "unsubscribe", "--config", cfg, "--uuid", uuid); err != nil {
		t.Fatalf("unsubscribe: %q %v", out, err)
	}
	// Without a config file the database commands work from --pg-url alone.
	out, err = runHooks(t, "list", "--pg-url", url)
	if err != nil || !strings.Contains(out, "incident_instance_updated") || !strings.Contains(out, "unsubscribed") ||
		strings.Contains(out, "whsec_") || strings.Contains(out, "s3cret") || !strings.Contains(out, "token=xxxxx") {
		t.Fatalf("list: %q %v", out, err)
	}
	if out, err = runHooks(t, "enable", "--config", cfg, "--uuid", uuid); err != nil || !strings.Contains(out, "enabled "+uuid) {
		t.Fatalf("enable: %q %v", out, err)
	}
	if out, err = runHooks(t, "update", "--config", cfg, "--uuid", uuid, "--url", "https://93.184.215.14/v2", "--method", "PUT", "--ordered=false"); err != nil ||
		!strings.Contains(out, "PUT https://93.184.215.14/v2") || !strings.Contains(out, "ordered false") {
		t.Fatalf("update: %q %v", out, err)
	}
	out, err = runHooks(t, "list", "--config", cfg, "--enabled", "--app", "crm")
	if err != nil || !strings.Contains(out, "https://93.184.215.14/v2") || !strings.Contains(out, "PUT") {
		t.Fatalf("list after update: %q %v", out, err)
	}
	out, err = runHooks(t, "apps", "--config", cfg)
	if err != nil || !regexp.MustCompile(`crm\s+1\s+1`).MatchString(out) {
		t.Fatalf("apps: %q %v", out, err)
	}

	// Refused up front, each with the flag named and the fix.
	sub := func(extra ...string) []string {
		args := map[string]string{"--app": "crm", "--tenant": "acme", "--event": "incident.instance.created", "--url": "https://93.184.215.14/x"}
		for i := 0; i+1 < len(extra); i += 2 {
			args[extra[i]] = extra[i+1]
		}
		out := []string{"subscribe", "--config", cfg}
		for k, v := range args {
			out = append(out, k, v)
		}
		return out
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{sub("--url", "https://"), `--url: "https://" has no host`},
		{sub("--url", "https://user:s3cret@93.184.215.14/x"), "--url: https://user:xxxxx@93.184.215.14/x carries a user name or password"},
		{sub("--url", "https://127.0.0.1/x"), "--url: 127.0.0.1 is a loopback address"},
		{sub("--url", "https://[::1]/x"), "--url: ::1 is a loopback address"},
		{sub("--url", "https://192.168.1.9/x"), "deliver.allow_cidrs"},
		{sub("--event", "candidate.created"), "--event: \"candidate.created\" is not an event of the model; its events are incident.instance.created, incident.instance.updated, incident.instance.deleted"},
		{sub("--event", "incident.instance.resolved"), "its events are incident.instance.created"},
		{sub("--app", "999"), `unknown application "999"; ` + "`walhook hooks apps`"},
		{[]string{"register-app", "--config", cfg, "--name", "crm"}, `application already exists: "crm" is application`},
		{[]string{"unsubscribe", "--config", cfg, "--uuid", "00000000-0000-0000-0000-000000000000"}, "unknown subscription uuid"},
		{[]string{"subscribe", "--pg-url", url, "--app", "crm", "--tenant", "acme", "--event", "incident.instance.created", "--url", "https://93.184.215.14/x"},
			"reads the config"},
	} {
		out, err := runHooks(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v\n%s\nwant an error with %q", tc.args, err, out, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "SQLSTATE") || strings.Contains(err.Error(), "s3cret")) {
			t.Errorf("%v: %v shows a SQLSTATE or the password", tc.args, err)
		}
	}
	out, err = runHooks(t, sub("--url", "https://hooks.invalid/x")...)
	if err != nil || !strings.Contains(out, "warning: hooks.invalid does not resolve") {
		t.Errorf("an unresolvable name should subscribe with a warning: %q %v", out, err)
	}
}
