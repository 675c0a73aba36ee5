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
	// env maps a key path to the WALHOOK_* variable that overrode it.
	env map[string]string
}

// locate returns the line for path, or for its nearest ancestor present in the file (a missing
// key is reported at the mapping that should hold it), and the env variable that set it, if any.
func (s *source) locate(path string) (line int, envVar string) {
	if s == nil {
		return 0, ""
	}
	// An override replaces the whole value, so the file's lines below it are stale: look for
	// one first.
	for p := path; p != ""; p = parentPath(p) {
		if v, ok := s.env[p]; ok {
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
	_, inEnv := s.env[path]
	return inFile || inEnv
}

func (s *source) sourceName() string {
	if s == nil {
		return ""
	}
	return s.name
}

// problem builds a Problem for path with its line, noting an environment override.
func (s *source) problem(path, msg string) Problem {
	line, envVar := s.locate(path)
	if envVar != "" {
		msg += " (value from " + envVar + ")"
	}
	return Problem{Path: path, Line: line, Message: msg}
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
