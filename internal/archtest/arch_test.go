// Package archtest holds the repository's dependency rules as tests: the production binary links
// no test or dev harness, a stage never imports another stage, and a production package never
// imports a harness. It has no code of its own.
package archtest

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const module = "github.com/walhook/walhook/"

// harnesses are the packages that exist for tests, benchmarks and `walhook dev` only: nothing the
// container image runs may link them.
var harnesses = []string{
	"internal/apachekafka", "internal/embedkafka", "internal/embedpg", "internal/kafkatest", "internal/pgtest",
	"internal/maven", "internal/childproc", "internal/devreceiver", "internal/demo",
	"internal/api/apitest", "internal/deadletter/dltest", "sinks/webhook/webhooktest",
	"internal/e2e", "internal/bench/",
	"github.com/twmb/franz-go/pkg/kfake", "github.com/twmb/franz-go/pkg/sr/srfake",
}

// stages talk to each other only through Kafka topics and shared types (avro, config).
var stages = []string{"cdc", "pipeline", "sinks/webhook", "sinks/compliance"}

func isHarness(pkg string) bool {
	rel := strings.TrimPrefix(pkg, module)
	for _, h := range harnesses {
		if rel == h || (strings.HasSuffix(h, "/") && strings.HasPrefix(rel, h)) {
			return true
		}
	}
	return false
}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"list"}, args...)...)
	cmd.Dir = repoRoot(t)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestImageLinksNoHarness: the binary the Dockerfile builds (-tags nodev) links no harness, no
// in-process broker and no fake registry.
func TestImageLinksNoHarness(t *testing.T) {
	deps := goList(t, "-tags", "nodev", "-deps", "./cmd/walhook")
	var bad []string
	for _, d := range deps {
		if isHarness(d) {
			bad = append(bad, d)
		}
	}
	if len(bad) > 0 {
		t.Errorf("the production build of cmd/walhook (-tags nodev) links harnesses %v; keep them behind the !nodev build tag", bad)
	}
	// The check has teeth: the default build, which has `walhook dev`, does link them.
	full := goList(t, "-deps", "./cmd/walhook")
	if !slices.ContainsFunc(full, isHarness) {
		t.Errorf("the default build of cmd/walhook links no harness; `walhook dev` should embed PostgreSQL and kfake")
	}
}

// TestPackageRules: no stage imports another stage, and no production package imports a harness
// (test files aside: they may use any harness).
func TestPackageRules(t *testing.T) {
	for _, line := range goList(t, "-tags", "nodev", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...") {
		fields := strings.Fields(line)
		pkg, imports := strings.TrimPrefix(fields[0], module), fields[1:]
		if isHarness(fields[0]) {
			continue
		}
		for _, imp := range imports {
			rel := strings.TrimPrefix(imp, module)
			if isHarness(imp) {
				t.Errorf("production package %s imports harness %s", pkg, rel)
			}
			if slices.Contains(stages, pkg) && slices.Contains(stages, rel) {
				t.Errorf("stage %s imports stage %s: stages talk through Kafka topics and shared types (avro, config)", pkg, rel)
			}
		}
	}
}

// TestImageRefusesDev: `walhook dev` in the production build says why it is missing and what to
// run instead, and exits non-zero.
func TestImageRefusesDev(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "walhook")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-tags", "nodev", "-o", bin, "./cmd/walhook")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags nodev: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, bin, "dev", "--fresh").CombinedOutput()
	if err == nil {
		t.Fatalf("walhook dev in the nodev build succeeded:\n%s", out)
	}
	for _, want := range []string{"not in this binary", "-tags nodev", "make run"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("walhook dev output lacks %q:\n%s", want, out)
		}
	}
}

// TestDocImportRules: every package keeps the import rules its doc.go states, in either of two
// forms: "It imports A, B and C only" (the walhook packages it may import) and "must not import
// X, Y or Z" (X a package or folder, "another stage", "any stage package", "any other walhook
// package", "walhook packages other than P").
func TestDocImportRules(t *testing.T) {
	all := goList(t, "-tags", "nodev", "-f", "{{.ImportPath}}|{{.Dir}}|{{join .Imports \" \"}}", "./...")
	var pkgs []string
	for _, line := range all {
		pkgs = append(pkgs, strings.TrimPrefix(strings.SplitN(line, "|", 2)[0], module))
	}
	checked := 0
	for _, line := range all {
		parts := strings.SplitN(line, "|", 3)
		pkg, dir := strings.TrimPrefix(parts[0], module), parts[1]
		doc, err := os.ReadFile(filepath.Join(dir, "doc.go"))
		if err != nil {
			continue
		}
		rules := parseImportRules(docComment(string(doc)), pkg, pkgs)
		if rules.empty() {
			continue
		}
		checked++
		for _, imp := range strings.Fields(parts[2]) {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			rel := strings.TrimPrefix(imp, module)
			if why := rules.violated(rel); why != "" {
				t.Errorf("%s imports %s, which its doc.go forbids (%s)", pkg, rel, why)
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d doc.go files state import rules this test understands; the parser lost its grip", checked)
	}
}

type importRules struct {
	allowed   []string // nil: no "only" list
	forbidden map[string]string
}

func (r importRules) empty() bool { return r.allowed == nil && len(r.forbidden) == 0 }

func (r importRules) violated(imp string) string {
	for f, why := range r.forbidden {
		if imp == f || strings.HasPrefix(imp, f+"/") {
			return why
		}
	}
	if r.allowed != nil && !slices.Contains(r.allowed, imp) {
		return "it imports " + strings.Join(r.allowed, ", ") + " only"
	}
	return ""
}

// docComment is the package comment's text as one line.
func docComment(src string) string {
	var b strings.Builder
	for _, l := range strings.Split(src, "\n") {
		if strings.HasPrefix(l, "package ") {
			break
		}
		if c, ok := strings.CutPrefix(l, "//"); ok {
			b.WriteString(strings.TrimSpace(c))
			b.WriteByte(' ')
		}
	}
	return b.String()
}

func parseImportRules(doc, self string, pkgs []string) importRules {
	r := importRules{forbidden: map[string]string{}}
	known := func(tok string) bool {
		return slices.ContainsFunc(pkgs, func(p string) bool { return p == tok || strings.HasPrefix(p, tok+"/") })
	}
	for _, sentence := range strings.FieldsFunc(doc, func(c rune) bool { return c == '.' || c == ';' }) {
		s := strings.TrimSpace(sentence)
		if _, rest, ok := strings.Cut(s, "must not import "); ok {
			why := "must not import " + rest
			switch {
			case strings.HasPrefix(rest, "any other walhook package"), strings.HasPrefix(rest, "other walhook packages"):
				for _, p := range pkgs {
					if p != self {
						r.forbidden[p] = why
					}
				}
			case strings.HasPrefix(rest, "walhook packages other than "):
				keep := importTokens(strings.TrimPrefix(rest, "walhook packages other than "))
				for _, p := range pkgs {
					if p != self && !slices.Contains(keep, p) {
						r.forbidden[p] = why
					}
				}
				continue // the names are the exceptions
			case strings.HasPrefix(rest, "another stage"), strings.HasPrefix(rest, "any stage package"), strings.HasPrefix(rest, "the other stages"):
				for _, st := range stages {
					if st != self {
						r.forbidden[st] = why
					}
				}
			}
			for _, tok := range importTokens(rest) {
				if known(tok) && tok != self {
					r.forbidden[tok] = why
				}
			}
			continue
		}
		if _, rest, ok := strings.Cut(s, "It imports "); ok && strings.HasSuffix(s, " only") {
			r.allowed = []string{}
			for _, tok := range importTokens(strings.TrimSuffix(rest, " only")) {
				if known(tok) {
					r.allowed = append(r.allowed, tok)
				}
			}
		}
	}
	return r
}

// importTokens splits "cdc, sinks or cmd" or "config, avro (why) and franz-go" into words.
func importTokens(s string) []string {
	var out []string
	var b strings.Builder
	flush := func() {
		if w := strings.TrimSpace(b.String()); w != "" && w != "or" && w != "and" {
			out = append(out, w)
		}
		b.Reset()
	}
	for _, c := range s {
		switch {
		case c == '(' || c == ')' || c == ',' || c == ' ' || c == ':':
			flush()
		default:
			b.WriteRune(c)
		}
	}
	flush()
	return out
}
