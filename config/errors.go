package config

import (
	"fmt"
	"strings"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Path names the key, e.g. "model.roots[0].subordinates[1].parent_column".
	Path string
	// Line is the 1-based line in the config file, or 0 when unknown (a value set by an
	// environment variable or in code, or a key that is missing with no parent in the file).
	Line int
	// Origin names where a value that did not come from the file came from: an environment
	// variable ("WALHOOK_BROKERS (environment)") or a command-line flag ("--pg-url (flag)").
	// Such a problem is not the file's, so it is printed without the file's name and line.
	Origin string
	// Message says what is wrong and how to fix it.
	Message string
}

// String formats the problem without its file name: "12: path: message", or
// "WALHOOK_BROKERS (environment): path: message" for a value from outside the file.
func (p Problem) String() string {
	var b strings.Builder
	if p.Origin != "" {
		b.WriteString(p.Origin)
		b.WriteString(": ")
	} else if p.Line > 0 {
		fmt.Fprintf(&b, "%d: ", p.Line)
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// ValidationError lists every problem found in one configuration, so a user fixes them in one
// pass instead of one per run. Callers branch on it with errors.As.
type ValidationError struct {
	// Source is the file name (or another label) the problems refer to; may be empty.
	Source   string
	Problems []Problem
}

// Error prints one problem per line, "config.yaml:12: model.roots[0].key: missing; ...".
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = e.format(p)
	}
	return strings.Join(lines, "\n")
}

func (e *ValidationError) format(p Problem) string {
	if e.Source == "" || p.Origin != "" {
		return p.String()
	}
	if p.Line > 0 {
		return e.Source + ":" + p.String()
	}
	return e.Source + ": " + p.String()
}

// orNil returns nil when there are no problems, so callers can `return problems.orNil()`.
func (e *ValidationError) orNil() error {
	if e == nil || len(e.Problems) == 0 {
		return nil
	}
	return e
}
