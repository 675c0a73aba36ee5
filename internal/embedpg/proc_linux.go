package embedpg

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// procAttr runs a server process as ra, in its own process group (so Kill can take the postmaster
// and all its backends at once, and a terminal's Ctrl-C reaches only us, who then stop it in
// order), and asks the kernel to SIGQUIT it (immediate shutdown) when our thread dies, so no
// postmaster outlives walhook even on kill -9 or a panic. Go applies Pdeathsig after switching
// credentials, which matters: a credential change clears it.
func procAttr(ra runAs) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Credential: ra.cred,
		Setpgid:    true,
		Pdeathsig:  syscall.SIGQUIT,
	}
}

// groupAlive reports whether a live (non-zombie) process remains in process group pgid. Zombies
// are skipped: killed backends are re-parented to PID 1, which in a container may never reap them,
// yet they no longer hold the cluster's shared memory.
func groupAlive(pgid int) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if state, group, ok := procStat(pid); ok && group == pgid && state != 'Z' && state != 'X' {
			return true
		}
	}
	return false
}

// procStat parses the state and process group from /proc/PID/stat. The command name may contain
// spaces and parentheses, so fields are counted from the last ')'.
func procStat(pid int) (state byte, pgrp int, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := bytes.Fields(b[i+1:]) // state ppid pgrp ...
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, false
	}
	pgrp, err = strconv.Atoi(string(f[2]))
	return f[0][0], pgrp, err == nil
}

// runsIn reports whether pid is a live process whose working directory is dir: a postmaster
// chdirs to its data directory, so this tells a live server on dir from an unrelated process
// that reused the pid of a killed one.
func runsIn(pid int, dir string) bool {
	state, _, ok := procStat(pid)
	if !ok || state == 'Z' || state == 'X' {
		return false
	}
	cwd, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "cwd"))
	if err != nil {
		// Without permission to look (another user's process) we cannot tell; say it is alive so
		// postgres itself, which checks shared memory too, makes the call.
		return true
	}
	real, err := filepath.EvalSymlinks(dir)
	return err == nil && cwd == real
}

// roomyTmpfs reports whether dir is a writable tmpfs with at least minFree bytes available.
func roomyTmpfs(dir string, minFree uint64) bool {
	const tmpfsMagic = 0x01021994
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil || st.Type != tmpfsMagic {
		return false
	}
	return st.Bavail*uint64(st.Bsize) >= minFree && syscall.Access(dir, 0x2 /* W_OK */) == nil
}

// shmAttached reports whether the System V shared memory segment that postmaster.pid in dir names
// still has processes attached, and the pid that attached or detached last. A new postmaster on
// dir refuses to start while one does ("pre-existing shared memory block is still in use"): after
// a SIGKILL the kernel detaches the killed backends as they exit, which under load can lag behind
// their leaving the process table.
func shmAttached(dir string) (attached bool, lastPid int) {
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return false, 0
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 7 {
		return false, 0
	}
	f := strings.Fields(lines[6]) // "key shmid"
	if len(f) != 2 {
		return false, 0
	}
	id, err := strconv.Atoi(f[1])
	if err != nil {
		return false, 0
	}
	var desc unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &desc); err != nil {
		return false, 0 // removed, or never ours
	}
	return desc.Nattch > 0, int(desc.Lpid)
}
