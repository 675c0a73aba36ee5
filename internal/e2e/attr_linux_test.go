package e2e

import "syscall"

// childAttr makes a child die with the test process, so a crashed test leaves no process behind.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
