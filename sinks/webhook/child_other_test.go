//go:build !linux

package webhook_test

import "syscall"

// childAttr: no parent-death signal outside Linux; t.Cleanup kills the children.
func childAttr() *syscall.SysProcAttr { return nil }
