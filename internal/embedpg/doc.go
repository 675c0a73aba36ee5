// Package embedpg runs a private PostgreSQL cluster from the server binaries installed on the
// machine, for `walhook dev` and for tests (through internal/pgtest).
//
// It owns the cluster's data directory, its postmaster process and nothing else: it starts
// `postgres -D dir` directly (never pg_ctl) so the process is our child, dies with us (Pdeathsig on
// Linux) and can be killed on purpose by crash tests. A cluster is configured for logical
// replication (wal_level=logical) and listens on 127.0.0.1 only, with trust authentication for the
// superuser `walhook`; it is a development and test server, never a production one.
//
// Files: the server log is <Dir>/postgres.log. Temporary clusters (Dir "") live in
// /dev/shm/walhook-embedpg-* when TMPDIR is unset and /dev/shm is a roomy tmpfs, else in
// os.TempDir(); they are copied from an initdb'd template cached beside them
// (walhook-embedpg-template-<hash>-u<uid>, with a .lock file), built once per binary version and
// user, because initdb costs 1-3 s and a copy a fraction of that.
//
// Running as root: initdb and postgres refuse to run as root, so when the effective uid is 0 they
// run as the user `nobody`; the data directory is chowned to it and its parent directories are made
// traversable (o+x) when they are not.
//
// Everything else depends on it, not the other way round: it must not import walhook packages
// other than internal/childproc (which starts its postgres children).
package embedpg
