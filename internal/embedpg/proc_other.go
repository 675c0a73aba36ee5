//go:build !linux

package embedpg

import "syscall"

// procAttr: without Linux's Pdeathsig a crashed walhook can leave its server running; Stop and
// Kill still work.
func procAttr(ra runAs) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: ra.cred, Setpgid: true}
}

// groupAlive cannot look cheaply without /proc; signal 0 reaches zombies too, which is harmless
// here because Kill and Stop only wait a bounded time for it.
func groupAlive(pgid int) bool { return syscall.Kill(-pgid, 0) == nil }

// runsIn defers to postgres's own stale-lock check.
func runsIn(pid int, dir string) bool { return true }

func roomyTmpfs(dir string, minFree uint64) bool { return false }

// shmAttached defers to postgres's own check.
func shmAttached(dir string) (bool, int) { return false, 0 }
