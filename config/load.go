package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
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
// environment overrides, then defaults, then Validate. It returns every problem at once in a
// *ValidationError.
func ParseWith(data []byte, source string, opts Options) (*Config, error) {
	cfg, err := decode(data, source, opts.Base)
	if err != nil {
		return nil, err
	}
	applyEnv(cfg, opts.LookupEnv)
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// decode turns the document into a Config carrying its line index. Structural problems (unknown
// keys, wrong types, bad durations) are returned together as a *ValidationError.
func decode(data []byte, name string, base *Config) (*Config, error) {
	src := &source{name: name, lines: map[string]int{}, env: map[string]string{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &ValidationError{Source: name, Problems: []Problem{syntaxProblem(err)}}
	}
	w := &nodeWalk{lines: src.lines}
	if len(doc.Content) > 0 {
		w.walk(doc.Content[0], reflect.TypeFor[Config](), "")
	}
	cfg := base.clone()
	if err := strictDecode(data, cfg); err != nil {
		w.problems = append(w.problems, decodeProblems(err, src.lines, w.problems)...)
	}
	if len(w.problems) > 0 {
		return nil, &ValidationError{Source: name, Problems: w.problems}
	}
	cfg.src = src
	return cfg, nil
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
func decodeProblems(err error, lines map[string]int, known []Problem) []Problem {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []Problem{syntaxProblem(err)}
	}
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

func syntaxProblem(err error) Problem {
	p := lineProblem(err.Error())
	p.Message = "invalid YAML: " + p.Message
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
