package apitest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// NPMFile returns the path of file (as the package's tarball names it, "package/…") of the npm
// package spec ("@scope/name@version"), fetched once with npm and checked against integrity (the
// registry's "sha512-…" of the tarball). Files are cached in $WALHOOK_NPM_CACHE, by default the
// user cache directory's walhook/npm, never in the repository. Without npm, or when the registry
// cannot be reached, the test skips saying why, except under CI=true (.ci/run installs npm), where
// it fails.
func NPMFile(t testing.TB, spec, integrity, file string) string {
	t.Helper()
	path, err := npmFile(t, spec, integrity, file)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return path
}

func npmFile(t testing.TB, spec, integrity, file string) (string, error) {
	dir := os.Getenv("WALHOOK_NPM_CACHE")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(cache, "walhook", "npm")
	}
	path := filepath.Join(dir, strings.NewReplacer("/", "-", "@", "-").Replace(strings.TrimPrefix(spec, "@")), filepath.FromSlash(strings.TrimPrefix(file, "package/")))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", fmt.Errorf("no npm on PATH: it fetches %s for this test; install npm (apt-get install npm)", spec)
	}
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "pack", spec, "--pack-destination", tmp, "--silent")
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "npm_config_cache="+filepath.Join(tmp, "npm-cache"), "npm_config_update_notifier=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm pack %s: %v\n%s", spec, err, out)
	}
	tgz, _ := filepath.Glob(filepath.Join(tmp, "*.tgz"))
	if len(tgz) != 1 {
		return "", fmt.Errorf("npm pack %s made %v", spec, tgz)
	}
	data, err := os.ReadFile(tgz[0])
	if err != nil {
		return "", err
	}
	sum := sha512.Sum512(data)
	if got := "sha512-" + base64.StdEncoding.EncodeToString(sum[:]); got != integrity {
		return "", fmt.Errorf("%s: the tarball's integrity is %s, want %s", spec, got, integrity)
	}
	content, err := fileInTarGz(data, file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", spec, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	// Written aside and renamed, so a concurrent test binary never reads half a file.
	part := fmt.Sprintf("%s.%d.part", path, os.Getpid())
	if err := os.WriteFile(part, content, 0o644); err != nil {
		return "", err
	}
	return path, os.Rename(part, path)
}

func fileInTarGz(data []byte, name string) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("no %s in the package", name)
		}
		if err != nil {
			return nil, err
		}
		if h.Name == name {
			return io.ReadAll(tr)
		}
	}
}
