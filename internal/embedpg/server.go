package embedpg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/walhook/walhook/internal/childproc"
)

const (
	logName        = "postgres.log"
	readyTimeout   = 60 * time.Second // covers crash recovery of a dev-sized cluster
	stopTimeout    = 30 * time.Second // fast shutdown, then immediate shutdown, then SIGKILL
	pollInterval   = 20 * time.Millisecond
	portAttempts   = 5
	logTailBytes   = 4096
	groupExitGrace = 5 * time.Second
)

// errPortTaken marks a start that lost the race for a free port to another process.
var errPortTaken = errors.New("embedpg: port already in use")

// launchRetrying starts the postmaster. With Port 0 it retries on a fresh port when another
// process grabbed the one we picked between our probe and the server's bind.
func (c *Cluster) launchRetrying(ctx context.Context, opts Options) error {
	for attempt := 1; ; attempt++ {
		if opts.Port == 0 {
			p, err := freePort()
			if err != nil {
				return err
			}
			c.port = p
		}
		err := c.launch(ctx, opts)
		if !errors.Is(err, errPortTaken) || opts.Port != 0 || attempt == portAttempts {
			return err
		}
		c.log.Debug("embedpg: port taken, retrying", zap.Int("port", c.port))
	}
}

func (c *Cluster) launch(ctx context.Context, opts Options) error {
	logFile, offset, err := c.openLog()
	if err != nil {
		return err
	}
	args := append([]string{"-D", c.dir}, c.settingArgs(opts.Settings)...)
	cmd := exec.Command(filepath.Join(c.binDir, "postgres"), args...)
	cmd.Dir = c.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile // *os.File: inherited directly, no copy goroutine
	cmd.SysProcAttr = procAttr(c.ra)
	// childproc forks from a thread that outlives the postmaster: Pdeathsig follows the forking
	// thread, and a thread Go ends for another reason would take the server down with it.
	child, err := childproc.Start(cmd)
	if err != nil {
		logFile.Close()
		return fmt.Errorf("embedpg: start postgres: %w", err)
	}
	c.cmd, c.logFile, c.exited = cmd, logFile, make(chan struct{})
	go c.wait(child) // owned by the Cluster: ends when the postmaster exits; Stop and Kill wait for it
	if err := c.waitReady(ctx); err != nil {
		return c.startFailed(err, offset)
	}
	return nil
}

func (c *Cluster) wait(child *childproc.Child) {
	<-child.Exited()
	c.waitErr = child.Err()
	close(c.exited)
}

// settingArgs turns our settings plus the caller's into -c flags. Flags rather than
// postgresql.conf edits keep a persistent Dir's config file untouched and make every run use
// exactly the current Options (the port changes between runs).
func (c *Cluster) settingArgs(extra map[string]string) []string {
	s := map[string]string{
		"wal_level":               "logical",
		"max_replication_slots":   "20",
		"max_wal_senders":         "20",
		"max_connections":         "200",
		"listen_addresses":        "127.0.0.1",
		"port":                    strconv.Itoa(c.port),
		"unix_socket_directories": "", // TCP only: a socket path under a deep Dir can exceed 107 bytes
	}
	if c.temp {
		s["fsync"] = "off" // a temporary cluster dies with the test; durability buys nothing
	}
	for k, v := range extra {
		s[k] = v
	}
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		args = append(args, "-c", k+"="+s[k])
	}
	return args
}

// waitReady polls over TCP until the server answers as our cluster, exits, or time runs out.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last error
	for {
		if last = c.ping(ctx); last == nil {
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("embedpg: postgres exited during startup: %v", c.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("embedpg: postgres not ready on port %d: %w (last attempt: %v)", c.port, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// ping connects and checks the server's data directory, so that another server that grabbed our
// port is not mistaken for ours.
func (c *Cluster) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var dir string
	if err := conn.QueryRow(ctx, "SHOW data_directory").Scan(&dir); err != nil {
		return err
	}
	if dir != c.dir {
		return fmt.Errorf("port %d answered by the server of %s", c.port, dir)
	}
	return nil
}

// startFailed stops what is left of the server and explains the failure with the server log.
func (c *Cluster) startFailed(err error, offset int64) error {
	c.terminate()
	tail := logTail(filepath.Join(c.dir, logName), offset)
	c.logFile.Close()
	c.cmd, c.logFile = nil, nil
	if strings.Contains(tail, "could not bind") || strings.Contains(tail, "could not create any TCP/IP sockets") {
		return fmt.Errorf("%w: %d (%v)", errPortTaken, c.port, err)
	}
	return fmt.Errorf("%w; server log %s:\n%s", err, filepath.Join(c.dir, logName), tail)
}

// openLog opens the server log for appending. It is given to the server user like every other
// file in Dir, so the ownership check of the next Start stays cheap.
func (c *Cluster) openLog() (*os.File, int64, error) {
	f, err := os.OpenFile(filepath.Join(c.dir, logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, 0, fmt.Errorf("embedpg: open server log: %w", err)
	}
	if c.ra.switches() {
		if err := f.Chown(c.ra.uid, c.ra.gid); err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("embedpg: chown server log: %w", err)
		}
	}
	off, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("embedpg: open server log: %w", err)
	}
	return f, off, nil
}

// logTail returns the last few KB this run wrote to the server log.
func logTail(path string, from int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no server log: " + err.Error() + ")"
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size()-from > logTailBytes {
		from = fi.Size() - logTailBytes
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, from, logTailBytes))
	return strings.TrimSpace(string(b))
}

// Stop shuts the server down (fast shutdown: sessions are disconnected, committed data is
// flushed), waits for it and every backend to exit, and removes a temporary Dir. It is idempotent
// and safe after Kill.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() { c.stopErr = c.stop() })
	return c.stopErr
}

func (c *Cluster) stop() error {
	var errs []error
	if c.cmd != nil {
		errs = append(errs, c.shutdown())
		errs = append(errs, c.logFile.Close())
	}
	if c.temp {
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, fmt.Errorf("embedpg: remove temporary data directory: %w", err))
		}
	}
	return errors.Join(errs...)
}

// shutdown escalates SIGINT (fast), SIGQUIT (immediate), SIGKILL (whole group). Each step gets
// stopTimeout; a checkpoint of a dev-sized cluster takes well under that.
func (c *Cluster) shutdown() error {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGQUIT} {
		if c.signalAndWait(sig, stopTimeout) {
			return c.waitGroupGone()
		}
		c.log.Warn("embedpg: postgres did not stop in time, escalating", zap.Stringer("signal", sig))
	}
	c.terminate()
	return c.waitGroupGone()
}

func (c *Cluster) signalAndWait(sig syscall.Signal, timeout time.Duration) bool {
	select {
	case <-c.exited:
		return true
	default:
	}
	_ = c.cmd.Process.Signal(sig) // fails only if it already exited, which the select below sees
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.exited:
		return true
	case <-t.C:
		return false
	}
}

// Kill SIGKILLs the postmaster and all its backends, as a crash would, and waits for them. The
// data directory is left as the crash left it: Start on the same Dir runs crash recovery. On a
// temporary cluster, call Stop afterwards to remove the directory.
func (c *Cluster) Kill() error {
	if c.cmd == nil {
		return nil
	}
	c.terminate()
	return c.waitGroupGone()
}

// terminate SIGKILLs the process group and reaps the postmaster.
func (c *Cluster) terminate() {
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL) // ESRCH: already gone
	<-c.exited
}

// waitGroupGone waits until no backend of the cluster is alive: a new postmaster on the same Dir
// refuses to start while an old backend still holds the shared memory.
func (c *Cluster) waitGroupGone() error {
	deadline := time.Now().Add(groupExitGrace)
	for groupAlive(c.cmd.Process.Pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("embedpg: backends of postgres pid %d still alive after %v; kill them (kill -9 -- -%d)",
				c.cmd.Process.Pid, groupExitGrace, c.cmd.Process.Pid)
		}
		time.Sleep(pollInterval)
	}
	for {
		attached, last := shmAttached(c.dir)
		if !attached {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("embedpg: the shared memory of postgres pid %d still has processes attached after %v (last pid %d); "+
				"list them with ipcs -mp and kill them", c.cmd.Process.Pid, groupExitGrace, last)
		}
		time.Sleep(pollInterval)
	}
}
