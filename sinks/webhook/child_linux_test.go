package webhook_test

import "syscall"

// childAttr makes a child sink die with the test process, so a crashed test leaves none behind.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
