package config

import (
	"strconv"
	"strings"
)

// source remembers where a Config's values came from, so problems found after decoding (by
// Validate or CheckDatabase) still point at a file line or name the environment variable.
// It is built once by Parse and read-only afterwards.
type source struct {
	name string
	// lines maps a key path ("model.roots[0].key") to the line of that key in the file.
	lines map[string]int
	// origin maps a key path to what overrode the file's value: a WALHOOK_* variable or a
	// flag, as Problem.Origin names it ("WALHOOK_BROKERS (environment)").
	origin map[string]string
}

func newSource(name string) *source {
	return &source{name: name, lines: map[string]int{}, origin: map[string]string{}}
}

// locate returns the line for path, or for its nearest ancestor present in the file (a missing
// key is reported at the mapping that should hold it), and the override that set it, if any.
func (s *source) locate(path string) (line int, origin string) {
	if s == nil {
		return 0, ""
	}
	// An override replaces the whole value, so the file's lines below it are stale: look for
	// one first.
	for p := path; p != ""; p = parentPath(p) {
		if v, ok := s.origin[p]; ok {
			return 0, v
		}
	}
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := s.lines[p]; ok {
			return l, ""
		}
	}
	return 0, ""
}

// explicit reports whether the file or the environment set path, even to a zero value. It is how
// `listen: ""` (disable) is told apart from an absent key (default).
func (s *source) explicit(path string) bool {
	if s == nil {
		return false
	}
	_, inFile := s.lines[path]
	_, inEnv := s.origin[path]
	return inFile || inEnv
}

func (s *source) sourceName() string {
	if s == nil {
		return ""
	}
	return s.name
}

// problem builds a Problem for path with its line, or with the override that set it.
func (s *source) problem(path, msg string) Problem {
	line, origin := s.locate(path)
	return Problem{Path: path, Line: line, Origin: origin, Message: msg}
}

// parentPath strips the last segment: "a.b[2].c" → "a.b[2]" → "a.b" → "a" → "".
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func indexPath(parent string, i int) string { return parent + "[" + strconv.Itoa(i) + "]" }
