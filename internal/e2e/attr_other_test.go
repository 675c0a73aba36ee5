//go:build !linux

package e2e

import "syscall"

// childAttr: without Pdeathsig, children are only killed by t.Cleanup.
func childAttr() *syscall.SysProcAttr { return nil }
