package embedpg

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ErrNoBinaries is returned (wrapped) when no PostgreSQL server binaries are found.
var ErrNoBinaries = errors.New("embedpg: PostgreSQL server binaries (initdb, postgres) not found")

// binSearch says where to look for the server binaries. It exists so tests can point the search at
// empty places without touching the process environment.
type binSearch struct {
	path  string   // a PATH-style list of directories
	globs []string // patterns matching candidate bin directories, e.g. /usr/lib/postgresql/*/bin
}

func defaultBinSearch() binSearch {
	return binSearch{
		path:  os.Getenv("PATH"),
		globs: []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin"},
	}
}

// FindBinaries returns the directory holding initdb and postgres: the first on PATH, else the
// highest version under /usr/lib/postgresql/*/bin (Debian, Ubuntu) or /usr/pgsql-*/bin (RHEL).
func FindBinaries() (binDir string, err error) {
	return defaultBinSearch().find()
}

func (s binSearch) find() (string, error) {
	if dir, ok := s.onPath(); ok {
		return dir, nil
	}
	if dir, ok := s.highestGlob(); ok {
		return dir, nil
	}
	return "", fmt.Errorf("%w on PATH or under %s: install PostgreSQL 14+ server binaries "+
		"(Debian/Ubuntu: `apt-get install postgresql`, they land in /usr/lib/postgresql/<version>/bin), "+
		"put their bin directory on PATH, or pass --pg-url to use an existing server",
		ErrNoBinaries, strings.Join(s.globs, ", "))
}

// onPath returns the real directory of the first initdb on PATH that has a postgres beside it.
// Symlinks are resolved because Debian links the binaries into /usr/local/bin or /usr/bin while
// the server finds its share directory relative to the real executable.
func (s binSearch) onPath() (string, bool) {
	for _, dir := range filepath.SplitList(s.path) {
		if dir == "" {
			continue
		}
		initdb, err := filepath.EvalSymlinks(filepath.Join(dir, "initdb"))
		if err != nil {
			continue
		}
		if real := filepath.Dir(initdb); hasBinaries(real) {
			return real, true
		}
	}
	return "", false
}

func (s binSearch) highestGlob() (string, bool) {
	var dirs []string
	for _, g := range s.globs {
		m, _ := filepath.Glob(g) // the only error is a malformed pattern, and ours are constants
		dirs = append(dirs, m...)
	}
	sort.SliceStable(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if hasBinaries(d) {
			return d, true
		}
	}
	return "", false
}

// versionOf extracts the major version from a path like /usr/lib/postgresql/15/bin, so that 15
// sorts above 9.6 (a string sort would not).
func versionOf(binDir string) float64 {
	parts := strings.Split(filepath.ToSlash(binDir), "/")
	for i := len(parts) - 1; i >= 0; i-- { // the version is the last numeric component
		part := strings.TrimPrefix(parts[i], "pgsql-")
		if v, err := strconv.ParseFloat(part, 64); err == nil {
			return v
		}
	}
	return 0
}

func hasBinaries(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}
