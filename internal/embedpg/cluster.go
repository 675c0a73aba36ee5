package embedpg

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Options configures Start. The zero value is a throw-away cluster on a free port.
type Options struct {
	// Dir is the data directory. "" means a new temporary directory, removed by Stop. A Dir that
	// already holds a cluster (PG_VERSION) is reused as is, so `walhook dev` keeps its data.
	Dir string
	// Port is the TCP port on 127.0.0.1. 0 picks a free one.
	Port int
	// Logger receives lifecycle messages (not the server log, which goes to <Dir>/postgres.log).
	// nil means zap.NewNop().
	Logger *zap.Logger
	// Settings are extra server settings (postgresql.conf names), applied after and over ours.
	Settings map[string]string
}

// Cluster is a running private PostgreSQL server. Stop it with Stop.
type Cluster struct {
	binDir string
	dir    string
	temp   bool // dir was created by Start and is removed by Stop
	port   int
	ra     runAs
	log    *zap.Logger

	logFile *os.File
	cmd     *exec.Cmd
	exited  chan struct{} // closed by wait() once the postmaster has exited and been reaped
	waitErr error         // the postmaster's exit status; read only after exited is closed

	stopOnce sync.Once
	stopErr  error
}

// Start creates the cluster if Dir holds none, starts its postmaster and returns once it accepts
// connections. ctx bounds the startup only; the server then runs until Stop or Kill.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	c, err := newCluster(opts)
	if err != nil {
		return nil, err
	}
	begin := time.Now()
	if err := c.bootstrap(ctx); err != nil {
		return nil, c.abandon(err)
	}
	created := time.Since(begin)
	if err := c.launchRetrying(ctx, opts); err != nil {
		return nil, c.abandon(err)
	}
	c.log.Info("embedpg: cluster ready", zap.String("dir", c.dir), zap.Int("port", c.port),
		zap.Duration("bootstrap", created), zap.Duration("total", time.Since(begin)))
	return c, nil
}

func newCluster(opts Options) (*Cluster, error) {
	binDir, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	ra, err := currentRunAs()
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	c := &Cluster{binDir: binDir, ra: ra, log: log, port: opts.Port}
	if err := c.prepareDir(opts.Dir); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Cluster) prepareDir(dir string) error {
	if dir == "" {
		tmp, err := os.MkdirTemp(tempRoot(), "walhook-embedpg-*")
		if err != nil {
			return fmt.Errorf("embedpg: create temporary data directory: %w; set TMPDIR to a writable directory", err)
		}
		c.dir, c.temp = tmp, true
	} else {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return fmt.Errorf("embedpg: data directory %q: %w", dir, err)
		}
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return fmt.Errorf("embedpg: create data directory %s: %w", abs, err)
		}
		c.dir = abs
	}
	// postgres refuses a data directory readable by others.
	if err := os.Chmod(c.dir, 0o700); err != nil {
		return fmt.Errorf("embedpg: chmod 0700 data directory %s: %w", c.dir, err)
	}
	if err := c.ra.makeTraversable(c.dir, c.log); err != nil {
		return err
	}
	return c.ra.own(c.dir)
}

// bootstrap makes sure dir holds a cluster. Temporary clusters are copied from the template; a
// persistent Dir gets its own synced initdb (it outlives the template and runs with fsync on).
func (c *Cluster) bootstrap(ctx context.Context) error {
	if hasCluster(c.dir) {
		return removeStaleLock(c.dir)
	}
	if !c.temp {
		c.log.Info("embedpg: creating cluster", zap.String("dir", c.dir))
		return initdb(ctx, c.binDir, c.dir, c.ra, false)
	}
	tmpl, err := ensureTemplate(ctx, c.binDir, c.ra)
	if err == nil {
		err = copyTree(tmpl, c.dir, c.ra)
	}
	if err == nil {
		return nil
	}
	// The cache is an optimisation: fall back to a private initdb into a clean directory.
	c.log.Warn("embedpg: template cache unusable, running initdb", zap.Error(err))
	if err := emptyDir(c.dir); err != nil {
		return err
	}
	return initdb(ctx, c.binDir, c.dir, c.ra, true)
}

func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("embedpg: read %s: %w", dir, err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("embedpg: clean %s: %w", dir, err)
		}
	}
	return nil
}

// removeStaleLock deletes a postmaster.pid left by a killed server whose pid now belongs to
// another process. postgres only checks that the pid is alive, and in a container a reused pid
// (say another test's postmaster, running as the same user) would make it refuse to start.
func removeStaleLock(dir string) error {
	pidFile := filepath.Join(dir, "postmaster.pid")
	pid, ok := readPid(pidFile)
	if !ok || runsIn(pid, dir) {
		return nil // no lock, or a live server: postgres reports the latter clearly itself
	}
	if err := os.Remove(pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("embedpg: remove stale %s: %w", pidFile, err)
	}
	return nil
}

func readPid(pidFile string) (int, bool) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, false
	}
	line := b
	for i, ch := range b {
		if ch == '\n' {
			line = b[:i]
			break
		}
	}
	pid, err := strconv.Atoi(string(line))
	return pid, err == nil && pid > 0
}

// abandon cleans up after a failed Start: the server (if any) is stopped and a temporary
// directory removed. The original error is returned with any cleanup error joined.
func (c *Cluster) abandon(err error) error {
	return errors.Join(err, c.Stop())
}

// URL returns a connection URL for database as the superuser walhook over TCP, e.g.
// postgres://walhook@127.0.0.1:5433/postgres?sslmode=disable. The database "postgres" always
// exists; create others yourself.
func (c *Cluster) URL(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(superuser),
		Host:     "127.0.0.1:" + strconv.Itoa(c.port),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Port returns the TCP port the server listens on.
func (c *Cluster) Port() int { return c.port }

// Dir returns the data directory (absolute).
func (c *Cluster) Dir() string { return c.dir }
