//go:build !linux

package apachekafka

import "syscall"

// sysProcAttr: without Linux's Pdeathsig a crashed parent can leave a JVM running; Close and
// Kill still work.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
