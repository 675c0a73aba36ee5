package config_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/walhook/walhook/config"
)

// closedPort returns 127.0.0.1:port where nothing listens: a port the OS just handed out and
// that was closed again.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestConfigCheckDatabaseUnreachable(t *testing.T) {
	addr := closedPort(t)
	url := "postgres://walhook@" + addr + "/app?sslmode=disable"
	inFile := mustParse(t, strings.Replace(minimal, "postgres://walhook@localhost:5432/app", url, 1), noEnv)
	cases := []struct {
		name     string
		cfg      *config.Config
		url      string
		wantLine int
	}{
		{"url from the file", inFile, "", 2},
		{"url passed in", mustParse(t, minimal, noEnv), url, 0}, // the file's line is not the URL used
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := config.CheckDatabase(context.Background(), c.cfg, c.url)
			var ve *config.ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) != 1 {
				t.Fatalf("want one problem, got %v", err)
			}
			p := ve.Problems[0]
			if p.Path != "postgres.url" || p.Line != c.wantLine {
				t.Errorf("problem at %s line %d, want postgres.url line %d", p.Path, p.Line, c.wantLine)
			}
			for _, want := range []string{"cannot connect to PostgreSQL at " + addr, "--pg-url", "WALHOOK_PG_URL", "running"} {
				if !strings.Contains(p.Message, want) {
					t.Errorf("message %q lacks %q", p.Message, want)
				}
			}
		})
	}
}

func TestConfigCheckDatabaseBadURL(t *testing.T) {
	cfg := mustParse(t, minimal, noEnv)
	err := config.CheckDatabase(context.Background(), cfg, "postgres://u:s3cret@host:notaport/db")
	if err == nil || !strings.Contains(err.Error(), "cannot parse") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("want a redacted parse problem, got %v", err)
	}
}
