package embedpg

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"go.uber.org/zap"
)

// unprivilegedUser is who runs initdb and postgres when we are root: both refuse to run as root.
// `nobody` exists everywhere and needs no change to the machine's user database.
const unprivilegedUser = "nobody"

// runAs is the identity the server processes run under. A nil cred means "as ourselves".
type runAs struct {
	cred *syscall.Credential
	uid  int
	gid  int
}

func currentRunAs() (runAs, error) {
	if os.Geteuid() != 0 {
		return runAs{uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	u, err := user.Lookup(unprivilegedUser)
	if err != nil {
		return runAs{}, fmt.Errorf("embedpg: running as root, PostgreSQL must run as an unprivileged user "+
			"but user %q is missing: %w; run walhook as a non-root user or create %q", unprivilegedUser, err, unprivilegedUser)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return runAs{}, fmt.Errorf("embedpg: user %q has non-numeric uid %q or gid %q", unprivilegedUser, u.Uid, u.Gid)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: false}
	return runAs{cred: cred, uid: uid, gid: gid}, nil
}

func (r runAs) switches() bool { return r.cred != nil }

// own gives dir and everything below it to the server user. It is a no-op when we do not switch
// users, and cheap when the tree already belongs to that user (only the root is checked first).
func (r runAs) own(dir string) error {
	if !r.switches() {
		return nil
	}
	if ownedBy(dir, r.uid) && !hasForeignChild(dir, r.uid) {
		return nil
	}
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, r.uid, r.gid)
	})
	if err != nil {
		return fmt.Errorf("embedpg: give %s to user %q: %w", dir, unprivilegedUser, err)
	}
	return nil
}

// hasForeignChild checks the direct children only: our own files (the log) are created by us
// as root beside the cluster's files, and a full walk on every start would be wasted on a large Dir.
func hasForeignChild(dir string, uid int) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return true
	}
	for _, e := range entries {
		if !ownedBy(filepath.Join(dir, e.Name()), uid) {
			return true
		}
	}
	return false
}

func ownedBy(p string, uid int) bool {
	fi, err := os.Lstat(p)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == uid
}

// makeTraversable adds o+x to every parent of dir that lacks it, so the server user can reach its
// data directory (t.TempDir() and /root are 0700). Each change is logged: it widens a permission.
func (r runAs) makeTraversable(dir string, log *zap.Logger) error {
	if !r.switches() {
		return nil
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		if err := addSearchBit(p, log); err != nil {
			return err
		}
		if parent := filepath.Dir(p); parent == p {
			return nil
		}
	}
}

func addSearchBit(p string, log *zap.Logger) error {
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("embedpg: stat parent directory %s: %w", p, err)
	}
	if fi.Mode().Perm()&0o001 != 0 {
		return nil
	}
	mode := fi.Mode().Perm() | 0o001
	if err := os.Chmod(p, mode); err != nil {
		return fmt.Errorf("embedpg: make %s traversable for user %q (chmod o+x): %w; "+
			"or choose a data directory whose parents are", p, unprivilegedUser, err)
	}
	log.Info("embedpg: made parent directory traversable for the server user",
		zap.String("dir", p), zap.String("user", unprivilegedUser), zap.Stringer("mode", mode))
	return nil
}
