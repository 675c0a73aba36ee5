//go:build unix && !nodev

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockDevDir takes an exclusive lock on <dir>/dev.lock for the life of the process, so a second
// `walhook dev` on the same folder says so instead of failing deep inside PostgreSQL
// (postmaster.pid) or sharing the broker's files. The kernel drops the lock when the process
// dies, however it dies, so a killed demo never leaves a stale lock. The returned func releases it.
func lockDevDir(dir string) (func(), error) {
	path := filepath.Join(dir, "dev.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another process"
			if pid, err := strconv.Atoi(strings.TrimSpace(string(holder))); err == nil {
				who = "process " + strconv.Itoa(pid)
			}
			return nil, fmt.Errorf("another walhook dev already runs in %s (%s): stop it with Ctrl-C in its terminal, "+
				"or give this one its own folder with --dir", dir, who)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { _ = f.Close() }, nil
}
