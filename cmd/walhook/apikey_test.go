package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/internal/api"
)

func runAPICommand(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newAPICommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// TestAPIKeyCommands: walhook api key create, list and revoke on a real database; the keys they
// print are the ones the API accepts, and only until revoked.
func TestAPIKeyCommands(t *testing.T) {
	url, cfg := hooksDatabase(t)
	keys, err := api.OpenKeys(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	created := func(args ...string) (id, key string) {
		t.Helper()
		out, err := runAPICommand(t, append([]string{"key", "create", "--config", cfg}, args...)...)
		if err != nil {
			t.Fatalf("api key create %v: %v\n%s", args, err, out)
		}
		return field(t, out, "id"), field(t, out, "key")
	}

	opID, opKey := created("--name", "ci")
	if p, err := keys.Authenticate(t.Context(), opKey); err != nil || !p.Operator() || !strings.HasPrefix(opKey, api.OperatorKeyPrefix) {
		t.Fatalf("the operator key %s: %+v %v", opKey, p, err)
	}
	_, tenantKey := created("--name", "acme-portal", "--tenant", "acme", "--expires-in", "720h")
	if p, err := keys.Authenticate(t.Context(), tenantKey); err != nil || p.Tenant != "acme" || !strings.HasPrefix(tenantKey, api.TenantKeyPrefix) {
		t.Fatalf("the tenant token %s: %+v %v", tenantKey, p, err)
	}

	// Stored as their SHA-256 only: no row holds either key's text.
	for _, k := range []string{opKey, tenantKey} {
		var plain, hashed int
		conn, err := pgx.Connect(t.Context(), url)
		if err != nil {
			t.Fatal(err)
		}
		err = conn.QueryRow(t.Context(), `SELECT count(*) FILTER (WHERE position($1 in k::text) > 0), count(*) FILTER (WHERE k.hash = sha256(convert_to($1, 'UTF8')))
			FROM hook.api_key k`, k).Scan(&plain, &hashed)
		_ = conn.Close(t.Context())
		if err != nil || plain != 0 || hashed != 1 {
			t.Fatalf("hook.api_key: %d rows hold the key, %d its SHA-256 (%v); want 0 and 1", plain, hashed, err)
		}
	}

	out, err := runAPICommand(t, "key", "list", "--config", cfg)
	if err != nil {
		t.Fatalf("api key list: %v\n%s", err, out)
	}
	if strings.Contains(out, opKey) || strings.Contains(out, tenantKey) {
		t.Fatalf("the list shows a key:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") ||
		!regexp.MustCompile(`^`+opID+`\s+ci\s+`+regexp.QuoteMeta(opKey[:12])+`…\s+\(operator\)\s+\S+\s+-\s+-\s+`).MatchString(lines[1]) ||
		!regexp.MustCompile(`acme-portal\s+`+regexp.QuoteMeta(tenantKey[:12])+`…\s+acme\s+\S+\s+20\d\d-`).MatchString(lines[2]) {
		t.Fatalf("api key list:\n%s", out)
	}

	out, err = runAPICommand(t, "key", "revoke", "--config", cfg, "--id", opID)
	if err != nil || strings.TrimSpace(out) != "revoked "+opID+" (ci)" {
		t.Fatalf("api key revoke: %v\n%s", err, out)
	}
	if _, err := keys.Authenticate(t.Context(), opKey); err == nil {
		t.Fatal("a revoked key still authenticates")
	}
	if _, err := keys.Authenticate(t.Context(), tenantKey); err != nil {
		t.Fatalf("revoking one key revoked another: %v", err)
	}
	out, _ = runAPICommand(t, "key", "list", "--config", cfg)
	if !regexp.MustCompile(`(?m)^` + opID + `\s+ci\s.*\s20\d\d-\S+\s+-$`).MatchString(out) {
		t.Fatalf("the list does not show the revocation:\n%s", out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"key", "revoke", "--config", cfg, "--id", "99999"}, "unknown API key 99999; `walhook api key list` lists them"},
		{[]string{"key", "create", "--config", cfg, "--name", "  "}, "name: empty; name the key after who uses it"},
		{[]string{"key", "create", "--config", cfg, "--name", "x", "--expires-in", "-1h"}, "expires_in: negative"},
		{[]string{"key", "create", "--config", cfg}, `required flag(s) "name" not set`},
		{[]string{"key", "revoke", "--config", cfg}, `required flag(s) "id" not set`},
		{[]string{"key", "list", "--config", cfg, "extra"}, `unknown command "extra"`},
	} {
		out, err := runAPICommand(t, tc.args...)
		if err == nil || !strings.Contains(err.Error()+out, tc.want) {
			t.Errorf("%v: %v\n%s\nwant an error saying %q", tc.args[1:], err, out, tc.want)
		}
	}
	unsetEnv(t, "WALHOOK_CONFIG")
	t.Chdir(t.TempDir())
	if _, err := runAPICommand(t, "key", "list"); err == nil || !strings.Contains(err.Error(), "no database: pass --pg-url, set WALHOOK_PG_URL or postgres.url") {
		t.Errorf("without a database: %v", err)
	}
}
