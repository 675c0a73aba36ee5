//go:build linux

package cdc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/kafkatest"
)

// childEnv makes the test binary run one CDC stage instead of the tests (TestMain): the
// kill -9 and big-transaction tests need the stage in a process of its own, to kill it and
// to measure its resident memory.
const childEnv = "WALHOOK_CDC_TEST_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	os.Exit(m.Run())
}

// childSpec is the part of the test config a child stage needs; the model is the demo's.
type childSpec struct {
	URL               string
	Brokers           []string
	Prefix            string
	SpillDir          string
	StatusInterval    time.Duration
	HeartbeatInterval time.Duration
	MemoryLimit       int64
	// ReadyFile is created once the stage has no snapshot left to take.
	ReadyFile string
}

// runChild runs the stage until SIGTERM (a clean stop) and returns the exit code.
func runChild(spec string) int {
	var cs childSpec
	if err := json.Unmarshal([]byte(spec), &cs); err != nil {
		fmt.Fprintln(os.Stderr, "child: bad spec:", err)
		return 2
	}
	base := &config.Config{Postgres: config.Postgres{URL: cs.URL}, Kafka: config.Kafka{Brokers: cs.Brokers}}
	cfg, err := config.ParseWith([]byte(demo.ModelYAML), "child", config.Options{Base: base})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: config:", err)
		return 2
	}
	cfg.Kafka.TopicPrefix = cs.Prefix
	cfg.CDC.SpillDir = cs.SpillDir
	cfg.CDC.StatusInterval = cs.StatusInterval
	cfg.CDC.HeartbeatInterval = cs.HeartbeatInterval
	cfg.CDC.MemoryLimitBytes = cs.MemoryLimit
	cfg.CDC.ManageReplicaIdentity = true
	log, _ := zap.NewDevelopment(zap.IncreaseLevel(zap.InfoLevel))
	reg := prometheus.NewRegistry()
	s, err := New(cfg, WithLogger(log), WithRegisterer(reg))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go signalReady(ctx, reg, cs.ReadyFile)
	if err := s.Run(ctx); err != nil {
		log.Error("stage failed", zap.Error(err))
		return 1
	}
	return 0
}

// signalReady creates path once walhook_cdc_snapshot_remaining_tables is 0.
func signalReady(ctx context.Context, g prometheus.Gatherer, path string) {
	for ctx.Err() == nil {
		mfs, _ := g.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "walhook_cdc_snapshot_remaining_tables" && len(mf.Metric) > 0 && mf.Metric[0].GetGauge().GetValue() == 0 {
				_ = os.WriteFile(path, nil, 0o600)
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// child is a CDC stage running in a process of its own.
type child struct {
	t       *testing.T
	cmd     *exec.Cmd
	logPath string
	ready   string
	started time.Time
	done    chan struct{}
	err     error // Wait's, valid once done is closed
}

// spec returns the child spec of the env's config.
func (e *env) spec(ready string) string {
	b, _ := json.Marshal(childSpec{ReadyFile: ready,
		URL: e.cfg.Postgres.URL, Brokers: e.cfg.Kafka.Brokers, Prefix: e.cfg.Kafka.TopicPrefix,
		SpillDir: e.cfg.CDC.SpillDir, StatusInterval: e.cfg.CDC.StatusInterval,
		HeartbeatInterval: e.cfg.CDC.HeartbeatInterval, MemoryLimit: e.cfg.CDC.MemoryLimitBytes,
	})
	return string(b)
}

// startChild starts the stage as a child process; it is killed when the test ends (and, by
// Pdeathsig, when the test process dies).
func (e *env) startChild(name string, extraEnv ...string) *child {
	e.t.Helper()
	dir := e.t.TempDir()
	logPath, ready := filepath.Join(dir, name+".log"), filepath.Join(dir, name+".ready")
	f, err := os.Create(logPath)
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childEnv+"="+e.spec(ready)), extraEnv...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c := &child{t: e.t, cmd: cmd, logPath: logPath, ready: ready, done: make(chan struct{})}
	c.started = time.Now()
	if err := cmd.Start(); err != nil {
		f.Close()
		e.t.Fatalf("start child %s: %v", name, err)
	}
	go func() {
		c.err = cmd.Wait()
		f.Close()
		close(c.done)
	}()
	e.t.Cleanup(func() { c.kill() })
	return c
}

// waitReady waits until the child streams the slot with no snapshot left to take.
func (c *child) waitReady(timeout time.Duration) {
	c.t.Helper()
	kafkatest.Eventually(c.t, timeout, func() error {
		if done, err := c.exited(); done {
			return fmt.Errorf("child exited (%v):\n%s", err, c.logTail())
		}
		if _, err := os.Stat(c.ready); err != nil {
			return errors.New("child not ready: snapshot not finished")
		}
		return nil
	})
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// term sends SIGTERM and waits for a clean exit.
func (c *child) term(timeout time.Duration) error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(timeout):
		c.kill()
		return fmt.Errorf("child did not stop within %v of SIGTERM", timeout)
	}
	if c.err != nil {
		return fmt.Errorf("child exited with %v", c.err)
	}
	return nil
}

// exited reports the exit error if the child has already exited.
func (c *child) exited() (bool, error) {
	select {
	case <-c.done:
		if c.err == nil {
			return true, errors.New("exited")
		}
		return true, c.err
	default:
		return false, nil
	}
}

// maxRSS is the child's peak resident set in bytes (after it exited).
func (c *child) maxRSS() int64 {
	if ru, ok := c.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss << 10
	}
	return 0
}

// logTail returns the end of the child's log for a failure message.
func (c *child) logTail() string {
	b, _ := os.ReadFile(c.logPath)
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return strings.TrimSpace(string(b))
}
