package apachekafka

import "syscall"

// sysProcAttr puts a JVM in its own process group (Kill takes it whole, and a terminal's Ctrl-C
// reaches only us) and has the kernel SIGKILL it when the thread that started it dies: a test
// binary that panics or is SIGKILLed leaves no broker behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
