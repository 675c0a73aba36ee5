package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/walhook/walhook/internal/childproc"
)

// proc is one walhook stage process that the nemesis kills and restarts. Its log (stdout and
// stderr of every incarnation) is appended to one file.
type proc struct {
	name    string
	bin     string
	args    []string
	env     []string
	logPath string

	mu      sync.Mutex
	cmd     *exec.Cmd     // guarded by mu; the current incarnation, nil before the first start
	exited  chan struct{} // guarded by mu; closed when the current incarnation has been reaped
	killing bool          // guarded by mu; the current incarnation is being killed by us
	starts  int           // guarded by mu
	kills   int           // guarded by mu
	crashes []string      // guarded by mu; how incarnations that we did not kill ended
}

func newProc(t *testing.T, dir, name string, static bool, bin string, args ...string) *proc {
	tmp := filepath.Join(dir, name+".tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &proc{
		name: name, bin: bin, args: args, logPath: filepath.Join(dir, name+".log"),
		// TMPDIR: bubbleup's default state dir and anything else a SIGKILLed stage cannot
		// remove stay inside the test's directory.
		env: append(os.Environ(), "WALHOOK_HTTP_LISTEN=127.0.0.1:0", "TMPDIR="+tmp),
	}
	if static {
		// Every incarnation of a stage is the same static group member with the same
		// transactional id, as in a StatefulSet, so a restart replaces the SIGKILLed member and
		// aborts its open transaction at once (kafkaconn.GroupOpts, kafkaconn.TransactionalID).
		// Without it kfake sometimes never expired a member killed inside JoinGroup and the
		// group stayed Stable with the dead member owning partitions until the drain timed out.
		p.env = append(p.env, "WALHOOK_INSTANCE_ID="+name)
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() { // the run's directory is removed after the test: keep the end of the story
			t.Logf("%s log (tail):\n%s", p.name, p.logTail(40))
		}
	})
	return p
}

// start starts a new incarnation unless one is running.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.runningLocked() {
		return nil
	}
	log, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "=== e2e: start %s #%d at %s\n", p.name, p.starts+1, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env, cmd.Stdout, cmd.Stderr, cmd.SysProcAttr = p.env, log, log, childAttr()
	child, err := childproc.Start(cmd) // Pdeathsig must follow this process, not a Go thread
	if err != nil {
		_ = log.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.killing = cmd, exited, false
	p.starts++
	// The reaper is owned by this incarnation: it ends when the process does, and kill and
	// t.Cleanup wait for it through exited.
	go func() {
		<-child.Exited()
		err := child.Err()
		_ = log.Close()
		p.mu.Lock()
		if !p.killing {
			p.crashes = append(p.crashes, fmt.Sprintf("%s: %v: %s", time.Now().Format("15:04:05.000"), err, p.logTail(1)))
		}
		p.mu.Unlock()
		close(exited)
	}()
	return nil
}

func (p *proc) runningLocked() bool {
	if p.exited == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runningLocked()
}

// kill SIGKILLs the current incarnation, if running, and waits until it is reaped.
func (p *proc) kill() {
	p.mu.Lock()
	if !p.runningLocked() {
		p.mu.Unlock()
		return
	}
	p.killing = true
	p.kills++
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// stats returns the starts, kills (by the nemesis or cleanup) and unexpected exits.
func (p *proc) stats() (starts, kills int, crashes []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts, p.kills, append([]string(nil), p.crashes...)
}

// logTail is the end of the stage's log, for failure messages.
func (p *proc) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
