package childproc

import (
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// A goroutine locked to its thread starts two children with Pdeathsig and returns, which ends
// its thread. The child started with plain cmd.Start dies with that thread (the hazard); the one
// started through Start must live on until it is killed. Go never ends the process's main
// thread (it parks it instead), so an attempt that happened to run there is repeated.
func TestChildOutlivesTheThreadThatStartedIt(t *testing.T) {
	for attempt := 1; attempt <= 5; attempt++ {
		if exercised := childOutlivesThread(t); exercised {
			return
		}
		t.Logf("attempt %d ran on a thread Go keeps; again", attempt)
	}
	t.Fatal("no attempt ended the forking thread: the test does not exercise Pdeathsig")
}

func childOutlivesThread(t *testing.T) (exercised bool) {
	sleeper := func() *exec.Cmd {
		cmd := exec.Command("sleep", "60")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		return cmd
	}
	type started struct {
		plain *exec.Cmd
		child *Child
		err   error
	}
	ch := make(chan started, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: Go ends this thread when the goroutine returns
		plain := sleeper()
		if err := plain.Start(); err != nil {
			ch <- started{err: err}
			return
		}
		child, err := Start(sleeper())
		ch <- started{plain: plain, child: child, err: err}
	}()
	s := <-ch
	if s.err != nil {
		t.Fatal(s.err)
	}
	t.Cleanup(func() {
		_ = s.child.Cmd.Process.Kill()
		<-s.child.Exited()
	})

	plainExited := make(chan error, 1)
	go func() { plainExited <- s.plain.Wait() }()
	select {
	case err := <-plainExited:
		if err == nil {
			t.Fatal("the control child exited cleanly; expected it to be killed by its parent-death signal")
		}
	case <-time.After(3 * time.Second):
		_ = s.plain.Process.Kill()
		<-plainExited
		return false
	}

	select {
	case <-s.child.Exited():
		t.Fatalf("the child started through Start died with an unrelated thread: %v", s.child.Err())
	default:
	}
	if err := syscall.Kill(s.child.Cmd.Process.Pid, 0); err != nil {
		t.Fatalf("child %d: %v", s.child.Cmd.Process.Pid, err)
	}
	_ = s.child.Cmd.Process.Kill()
	select {
	case <-s.child.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("Exited not closed after the child was killed")
	}
	return true
}
