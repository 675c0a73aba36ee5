// Package pgtest gives tests a PostgreSQL server and a fresh database each, through t-scoped
// helpers that clean up after themselves:
//
//	srv := pgtest.Start(t)               // a private embedded cluster, stopped by t.Cleanup
//	url := pgtest.NewDatabase(t, srv)    // a uniquely named database on it, ready for the demo schema
//
// The embedded cluster (internal/embedpg) has wal_level=logical, 20 replication slots and wal
// senders, trust auth for the superuser walhook, and listens on 127.0.0.1 on a free port.
//
// Set WALHOOK_TEST_PG_URL (e.g. postgres://postgres:pw@localhost:5432/postgres?sslmode=disable)
// to run the same tests against an existing server instead: Start then starts nothing, and
// NewDatabase creates its unique database there and drops it (with its replication slots) in
// t.Cleanup. That server needs wal_level=logical and a role allowed to create databases and
// replication slots. The database in the URL is the one NewDatabase connects to for
// administration ("postgres" when the URL names none).
//
// Crash tests that must kill the server use StartCluster, which always starts an embedded cluster
// (and skips the test when WALHOOK_TEST_PG_URL is set and no PostgreSQL binaries are installed).
//
// pgtest is imported only by tests. It must not import walhook packages other than internal/embedpg.
package pgtest
