package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Options control ParseWith and LoadWith.
type Options struct {
	// LookupEnv reads the WALHOOK_* overrides (see env.go). Nil means no environment at all,
	// which keeps tests hermetic; Load and Parse pass os.LookupEnv.
	LookupEnv func(key string) (string, bool)
	// Base is the configuration the document is decoded on top of: keys present in the
	// document replace Base's values, absent keys keep them. Nil starts from an empty Config.
	// `walhook dev` uses it to put the demo model (internal/demo/model.yaml, a document with only
	// a model section) over the addresses of the servers it started. Base is not modified.
	Base *Config
	// Overrides are command-line values; they win over LookupEnv and the file.
	Overrides []Override
}

// Load reads the config file at path, applies the process's WALHOOK_* environment, fills in
// defaults and validates. The error is a *ValidationError when the file could be read.
func Load(path string) (*Config, error) {
	return LoadWith(path, Options{LookupEnv: os.LookupEnv})
}

// LoadWith is Load with explicit options.
func LoadWith(path string, opts Options) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w; pass --config with the path of your walhook YAML file", err)
	}
	return ParseWith(data, path, opts)
}

// Parse is Load for bytes already in memory; source names them in problems (a file name).
func Parse(data []byte, source string) (*Config, error) {
	return ParseWith(data, source, Options{LookupEnv: os.LookupEnv})
}

// ParseWith decodes data strictly (unknown keys are problems with their line), applies the
// environment overrides and Overrides, then defaults, then Validate. It returns every problem at
// once in a *ValidationError: those of decoding (unknown keys, wrong types) together with those
// of validation, so a user fixes them in one pass. Only broken YAML syntax stops it early, since
// nothing after the break can be read.
func ParseWith(data []byte, source string, opts Options) (*Config, error) {
	cfg, decodeProblems, err := decode(data, source, opts.Base)
	if err != nil {
		return nil, err
	}
	applyEnv(cfg, opts.LookupEnv)
	if err := applyOverrides(cfg, opts.Overrides); err != nil {
		return nil, err
	}
	cfg.applyDefaults()
	var problems []Problem
	var ve *ValidationError
	if err := cfg.Validate(); errors.As(err, &ve) {
		problems = ve.Problems
	} else if err != nil {
		return nil, err
	}
	if all := mergeProblems(decodeProblems, problems); len(all) > 0 {
		return nil, &ValidationError{Source: source, Problems: all}
	}
	return cfg, nil
}

// mergeProblems lists decoding's problems and validation's in file order, leaving out a
// validation problem about a key whose value decoding already refused (a list given as a
// number would also be reported as empty).
func mergeProblems(decoded, validated []Problem) []Problem {
	out := slices.Clone(decoded)
	for _, p := range validated {
		if !slices.ContainsFunc(decoded, func(d Problem) bool { return d.Path != "" && pathWithin(p.Path, d.Path) }) {
			out = append(out, p)
		}
	}
	// Problems with a line come first, in line order; then the rest (missing sections,
	// environment and flag values) in the order they were found.
	slices.SortStableFunc(out, func(a, b Problem) int {
		switch {
		case a.Line == b.Line:
			return 0
		case a.Line == 0:
			return 1
		case b.Line == 0:
			return -1
		}
		return a.Line - b.Line
	})
	return out
}

// pathWithin reports whether path is p or below it ("a.b[0].c" is within "a.b").
func pathWithin(path, p string) bool {
	return path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[")
}

// decode turns the document into a Config carrying its line index. Structural problems (unknown
// keys, wrong types, bad durations) are returned as problems next to the partly decoded Config,
// whose other values are still good for validation. Broken syntax is a *ValidationError.
func decode(data []byte, name string, base *Config) (*Config, []Problem, error) {
	src := newSource(name)
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, &ValidationError{Source: name, Problems: []Problem{syntaxProblem(data, err)}}
	}
	w := &nodeWalk{lines: src.lines}
	if len(doc.Content) > 0 {
		w.walk(doc.Content[0], reflect.TypeFor[Config](), "")
	}
	cfg := base.clone()
	if err := strictDecode(data, cfg); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, nil, &ValidationError{Source: name, Problems: []Problem{syntaxProblem(data, err)}}
		}
		w.problems = append(w.problems, decodeProblems(te, src.lines, w.problems)...)
	}
	cfg.src = src
	return cfg, w.problems, nil
}

func strictDecode(data []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(cfg)
	if errors.Is(err, io.EOF) { // an empty file is an empty config; Validate says what is missing
		return nil
	}
	return err
}

// yamlLineRE matches the "line N: message" form of yaml.v3's errors.
var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// decodeProblems converts the strict decoder's errors to problems, leaving out unknown-key errors
// the node walk already reported with a better message.
func decodeProblems(te *yaml.TypeError, lines map[string]int, known []Problem) []Problem {
	reported := map[int]bool{}
	for _, p := range known {
		reported[p.Line] = true
	}
	var out []Problem
	for _, msg := range te.Errors {
		p := lineProblem(msg)
		if reported[p.Line] && strings.Contains(p.Message, "not found in type") {
			continue
		}
		p.Path = pathAtLine(lines, p.Line)
		out = append(out, p)
	}
	return out
}

// syntaxProblem reports broken YAML at the line where the document stops being readable.
// yaml.v3's own line is that of the enclosing construct, counted from 0 for parser errors, so
// a break on line 3 inside a mapping that starts on line 1 is reported on line 1 (or 0); the
// first prefix of whole lines that fails with the same message is where the break is.
func syntaxProblem(data []byte, err error) Problem {
	p := lineProblem(err.Error())
	p.Message = "invalid YAML: " + p.Message
	lines := bytes.SplitAfter(data, []byte("\n"))
	var prefix []byte
	for i, l := range lines {
		prefix = append(prefix, l...)
		var n yaml.Node
		if perr := yaml.Unmarshal(prefix, &n); perr != nil && lineProblem(perr.Error()).Message == lineProblem(err.Error()).Message {
			p.Line = i + 1
			break
		}
	}
	return p
}

func lineProblem(msg string) Problem {
	m := yamlLineRE.FindStringSubmatch(msg)
	if m == nil {
		return Problem{Message: msg}
	}
	line, _ := strconv.Atoi(m[1])
	return Problem{Line: line, Message: typeHint(m[2])}
}

// typeHint adds the fix to yaml.v3's type errors for the types users most often get wrong.
func typeHint(msg string) string {
	switch {
	case strings.Contains(msg, "time.Duration"):
		return msg + "; write a Go duration string such as 10s, 500ms or 1m30s"
	case strings.Contains(msg, "into []string"):
		return msg + "; write a list, e.g. [a, b] or one '- item' per line"
	case strings.Contains(msg, "into int"), strings.Contains(msg, "into bool"):
		return msg + "; write the value without quotes"
	}
	return msg
}
