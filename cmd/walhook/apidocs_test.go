package main

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestAPIDocsExamples runs docs/api.md's examples, as written and in order, in one shell against
// walhook dev, the way its reader would after `. .walhook/dev.env`.
func TestAPIDocsExamples(t *testing.T) {
	requirePostgres(t)
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s missing: .ci/run installs it", tool)
			}
			t.Skipf("%s missing: docs/api.md's examples need it", tool)
		}
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "api.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := string(doc)[strings.Index(string(doc), "## Examples"):]
	section = section[:strings.Index(section[3:], "\n## ")+3]
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1)
	if len(blocks) != 1 {
		t.Fatalf("docs/api.md's Examples have %d sh blocks, want 1", len(blocks))
	}
	script := blocks[0][1]
	d := startDev(t, filepath.Join(t.TempDir(), ".walhook"), "")
	waitAPI(t, d.env["WALHOOK_API_URL"])
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Env = append(d.envWith(nil), "PATH="+filepath.Dir(d.bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docs/api.md's examples failed: %v\n%s", err, out)
	}
	for _, want := range []string{`"role":"operator"`, `"name":"crm"`, `"X-Team":"integrations"`, `"enabled":false`, `"grace_seconds":3600`, "\n403\n", `"$schema"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the examples' output lacks %q:\n%s", want, out)
		}
	}
}

// waitAPI checks that walhook dev's API answers: dev binds it before it prints that it is
// ready, so the first request must succeed, with no retry.
func waitAPI(t *testing.T, base string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(base + "/openapi.json")
	if err != nil {
		t.Fatalf("walhook dev said it is ready but its API at %s does not answer: %v", base, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("walhook dev said it is ready but GET %s/openapi.json answered %s", base, resp.Status)
	}
}
