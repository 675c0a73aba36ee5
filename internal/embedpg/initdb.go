package embedpg

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

// superuser is the cluster's only role, created by initdb; URL connects as it with trust auth.
const superuser = "walhook"

func hasCluster(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "PG_VERSION"))
	return err == nil
}

// initdb creates a cluster in dir (which must be missing or empty). noSync skips initdb's final
// fsync: right for throw-away clusters, wrong for a persistent Dir whose server keeps fsync on.
func initdb(ctx context.Context, binDir, dir string, ra runAs, noSync bool) error {
	args := []string{"-D", dir, "-U", superuser, "-A", "trust", "-E", "UTF8", "--locale=C"}
	if noSync {
		args = append(args, "--no-sync")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"), args...)
	cmd.Dir = dir
	cmd.SysProcAttr = procAttr(ra)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("embedpg: initdb %s: %w; output:\n%s\n(a Dir without PG_VERSION must be empty "+
			"or missing; remove it or choose another)", dir, err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// templatePath names the cached initdb'd cluster for these binaries and this user. The binary's
// size and mtime stand in for its version, so a package upgrade gets a fresh template; the uid is in
// the name because a template made by one user is unreadable (0700) to another.
func templatePath(binDir string) (string, error) {
	fi, err := os.Stat(filepath.Join(binDir, "postgres"))
	if err != nil {
		return "", fmt.Errorf("embedpg: stat postgres binary: %w", err)
	}
	h := sha256.Sum256([]byte(binDir + "\x00" + strconv.FormatInt(fi.Size(), 10) + "\x00" + fi.ModTime().String()))
	name := fmt.Sprintf("walhook-embedpg-template-%s-u%d", hex.EncodeToString(h[:6]), os.Geteuid())
	return filepath.Join(tempRoot(), name), nil
}

// ensureTemplate returns the cached template, building it on first use. A lock file serialises
// builders across processes (go test runs packages in parallel) so only one pays for initdb, and
// the build goes to a temporary name renamed into place, so a crash mid-build leaves no half
// template behind. The lock is released by the kernel if we die holding it.
func ensureTemplate(ctx context.Context, binDir string, ra runAs) (string, error) {
	tmpl, err := templatePath(binDir)
	if err != nil {
		return "", err
	}
	unlock, err := lockFile(tmpl + ".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if hasCluster(tmpl) {
		return tmpl, nil
	}
	return tmpl, buildTemplate(ctx, binDir, tmpl, ra)
}

func buildTemplate(ctx context.Context, binDir, tmpl string, ra runAs) error {
	tmp, err := os.MkdirTemp(filepath.Dir(tmpl), filepath.Base(tmpl)+".build-*")
	if err != nil {
		return fmt.Errorf("embedpg: create template directory: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op after the rename succeeded
	if err := ra.own(tmp); err != nil {
		return err
	}
	if err := initdb(ctx, binDir, tmp, ra, true); err != nil {
		return err
	}
	// A leftover template without PG_VERSION (removed by a tmp cleaner) would block the rename.
	_ = os.RemoveAll(tmpl)
	if err := os.Rename(tmp, tmpl); err != nil {
		return fmt.Errorf("embedpg: install template %s: %w", tmpl, err)
	}
	return nil
}

func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("embedpg: open template lock %s: %w; set TMPDIR to a writable directory", path, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("embedpg: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil // closing the descriptor releases the flock
}
