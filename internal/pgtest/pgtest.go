package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/walhook/walhook/internal/embedpg"
)

// EnvURL names the environment variable pointing the tests at an existing server.
const EnvURL = "WALHOOK_TEST_PG_URL"

// cleanupTimeout bounds dropping a test database on an external server.
const cleanupTimeout = 30 * time.Second

// URLer is a server NewDatabase can create databases on: *Server and *embedpg.Cluster.
type URLer interface {
	URL(database string) string
}

// Server is the PostgreSQL server of one test: an embedded cluster, or the external server named
// by WALHOOK_TEST_PG_URL.
type Server struct {
	cluster *embedpg.Cluster // nil for an external server
	base    *url.URL         // the external server's URL; nil for an embedded cluster
	adminDB string           // the database NewDatabase connects to for CREATE/DROP DATABASE
}

// URL returns a connection URL for database on this server.
func (s *Server) URL(database string) string {
	if s.cluster != nil {
		return s.cluster.URL(database)
	}
	u := *s.base
	u.Path = "/" + database
	u.RawPath = ""
	return u.String()
}

// Cluster returns the embedded cluster, or nil when the tests run against WALHOOK_TEST_PG_URL.
func (s *Server) Cluster() *embedpg.Cluster { return s.cluster }

// Start returns the server for t: the one named by WALHOOK_TEST_PG_URL if set, else a new
// embedded cluster stopped when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	if raw := os.Getenv(EnvURL); raw != "" {
		return external(t, raw)
	}
	return &Server{cluster: StartCluster(t), adminDB: "postgres"}
}

func external(t testing.TB, raw string) *Server {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("pgtest: %s=%q is not a postgres:// URL (%v); fix or unset it", EnvURL, raw, err)
	}
	admin := strings.TrimPrefix(u.Path, "/")
	if admin == "" {
		admin = "postgres"
	}
	return &Server{base: u, adminDB: admin}
}

// StartCluster starts an embedded cluster for t, stopped by t.Cleanup, whatever
// WALHOOK_TEST_PG_URL says: for tests that Kill and restart the server.
func StartCluster(t testing.TB) *embedpg.Cluster {
	t.Helper()
	c, err := embedpg.Start(t.Context(), embedpg.Options{Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})
	if errors.Is(err, embedpg.ErrNoBinaries) && os.Getenv(EnvURL) != "" {
		t.Skipf("pgtest: this test needs an embedded cluster it can kill: %v", err)
	}
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("pgtest: stop cluster: %v", err)
		}
	})
	return c
}

// NewDatabase creates a database with a name unique to t and returns its URL. On an external
// server it is dropped, with its replication slots, when t ends; an embedded cluster's databases
// go with the cluster.
func NewDatabase(t testing.TB, s URLer) string {
	t.Helper()
	name := databaseName(t.Name())
	admin := adminURL(s)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := execSQL(ctx, admin, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	if srv, ok := s.(*Server); ok && srv.cluster == nil {
		t.Cleanup(func() { dropDatabase(t, admin, name) })
	}
	return s.URL(name)
}

func adminURL(s URLer) string {
	if srv, ok := s.(*Server); ok {
		return srv.URL(srv.adminDB)
	}
	return s.URL("postgres")
}

// databaseName derives a valid, unique (random suffix), at most 63-byte name from the test name,
// so a leftover database on a shared server says which test made it.
func databaseName(testName string) string {
	var b strings.Builder
	b.WriteString("t_")
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 42 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	suffix := make([]byte, 5)
	_, _ = rand.Read(suffix) // crypto/rand.Read never fails on supported platforms
	return b.String() + "_" + hex.EncodeToString(suffix)
}

func execSQL(ctx context.Context, url, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql, args...)
	return err
}
