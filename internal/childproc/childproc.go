// Package childproc starts child processes whose parent-death signal fires only when the parent
// process dies.
//
// Linux delivers Pdeathsig when the *thread* that forked the child exits, not the process. Go
// ends a thread whenever a goroutine locked to it returns (apachekafka's node waiters do, each
// time a broker is killed), and a thread that once forked a child can later be the one locked.
// A child started from an arbitrary goroutine can therefore be killed at a random moment while
// its parent lives on: the whole-system test lost its PostgreSQL server that way. Start forks
// from a thread locked to the goroutine that waits for the child, so that thread outlives it.
package childproc

import (
	"os/exec"
	"runtime"
)

// Child is a started process and its exit.
type Child struct {
	Cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// Start starts cmd (with whatever SysProcAttr the caller set, typically Pdeathsig) from a
// dedicated OS thread that lives until the process has exited and been waited for.
func Start(cmd *exec.Cmd) (*Child, error) {
	c := &Child{Cmd: cmd, exited: make(chan struct{})}
	started := make(chan error, 1)
	go func() { // owned by the Child: ends when the process exits
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine, after the child
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.err = cmd.Wait()
		close(c.exited)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return c, nil
}

// Exited is closed once the process has exited and Wait returned.
func (c *Child) Exited() <-chan struct{} { return c.exited }

// Err is cmd.Wait's result; valid after Exited is closed.
func (c *Child) Err() error { return c.err }
