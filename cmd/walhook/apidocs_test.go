package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/internal/kafkatest"
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
	t.Run("reading a snapshot topic", func(t *testing.T) { testSnapshotConsumers(t, d, string(doc)) })
	t.Run("walhook hooks and the API see and change the same subscriptions", func(t *testing.T) { testHooksAndAPIAgree(t, d) })
}

func testHooksAndAPIAgree(t *testing.T, d *devStack) {
	base, key := d.env["WALHOOK_API_URL"], d.env["WALHOOK_API_KEY"]
	if r := d.run("hooks", "register-app", "--name", "hooks-crm"); r.code != 0 {
		t.Fatalf("hooks register-app: %s", r)
	}
	r := d.run("hooks", "subscribe", "--app", "hooks-crm", "--tenant", "globex", "--event", "incident.instance.deleted", "--url", "https://example.com/from-hooks")
	if r.code != 0 {
		t.Fatalf("hooks subscribe: %s", r)
	}
	uuid := field(t, r.stdout, "uuid")
	got := string(apiCall(t, base, key, "GET", "/v1/subscriptions/"+uuid, nil))
	if !strings.Contains(got, `"url":"https://example.com/from-hooks"`) || !strings.Contains(got, `"tenant":"globex"`) {
		t.Fatalf("the API shows the subscription walhook hooks made as %s", got)
	}
	apiCall(t, base, key, "PATCH", "/v1/subscriptions/"+uuid, map[string]any{"url": "https://example.com/from-api", "method": "PUT"})
	list := func() string {
		r := d.run("hooks", "list", "--tenant", "globex")
		if r.code != 0 {
			t.Fatalf("hooks list: %s", r)
		}
		for _, l := range strings.Split(r.stdout, "\n") {
			if strings.Contains(l, uuid) {
				return strings.Join(strings.Fields(l), " ")
			}
		}
		t.Fatalf("hooks list does not show %s:\n%s", uuid, r.stdout)
		return ""
	}
	if l := list(); !strings.Contains(l, " PUT https://example.com/from-api bare false true") {
		t.Fatalf("walhook hooks list after the API's update: %s", l)
	}
	apiCall(t, base, key, "DELETE", "/v1/subscriptions/"+uuid, nil)
	if l := list(); !strings.HasSuffix(l, " false unsubscribed") {
		t.Fatalf("walhook hooks list after the API's delete: %s", l)
	}
	if r := d.run("hooks", "enable", "--uuid", uuid); r.code != 0 {
		t.Fatalf("hooks enable: %s", r)
	}
	if got := string(apiCall(t, base, key, "GET", "/v1/subscriptions/"+uuid, nil)); !strings.Contains(got, `"enabled":true`) {
		t.Fatalf("the API after walhook hooks enable: %s", got)
	}
}

// testSnapshotConsumers runs docs/api.md's kcat command and franz-go program, as written, on the
// snapshot topic after the README's story: both must show its two versions.
func testSnapshotConsumers(t *testing.T, d *devStack, doc string) {
	if _, err := exec.LookPath("kcat"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kcat missing: .ci/run installs it")
		}
		t.Skip("kcat missing: docs/api.md's kcat example needs it")
	}
	section := doc[strings.Index(doc, "### Reading a snapshot topic"):]
	section = section[:strings.Index(section, "\n## ")]
	sh := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1)
	prog := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(section, -1)
	if len(sh) != 1 || len(prog) != 1 {
		t.Fatalf("docs/api.md's \"Reading a snapshot topic\" has %d sh and %d go blocks, want 1 and 1", len(sh), len(prog))
	}
	// On a shared Kafka the dev stack has a topic prefix of its own.
	ours := func(s string) string { return strings.ReplaceAll(s, "walhook.snapshots.", d.prefix+"snapshots.") }
	d.waitInitialSnapshot()
	execSQL(t, d.env["WALHOOK_PG_URL"], story...)
	env := append(d.envWith(nil), "PATH="+filepath.Dir(d.bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	var out []byte
	kafkatest.Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", ours(sh[0][1]))
		cmd.Env = env
		var err error
		if out, err = cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("the kcat example failed: %v\n%s", err, out)
		}
		if n := strings.Count(string(out), "134 walhook-event-type="); n != 2 {
			log := d.out.String()
			return fmt.Errorf("the kcat example printed %d of incident 134's 2 versions:\n%s\nwalhook dev's log ends:\n%s", n, out, log[max(0, len(log)-6000):])
		}
		return nil
	})
	for i, want := range []string{"walhook-event-type=incident_instance_created,walhook-version=1,walhook-tenant=acme",
		"walhook-event-type=incident_instance_updated,walhook-version=2,walhook-tenant=acme"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("kcat line %d: want %q in:\n%s", i+1, want, out)
		}
	}

	if d.env["WALHOOK_REGISTRY_URL"] == "" {
		t.Skip("walhook dev runs without a schema registry here (a shared Kafka without WALHOOK_TEST_REGISTRY_URL); the franz-go example reads the Confluent wire format")
	}
	// The program is built inside this module, whose go.mod has its dependencies.
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("testdata", "snapshots-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(ours(prog[0][1])), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./"+dir, "-topic", d.prefix+"snapshots.incident.instance", "-n", "2")
	cmd.Env = append(d.envWith(nil), "PATH="+os.Getenv("PATH"))
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the franz-go example failed: %v\n%s", err, got)
	}
	lines := strings.Split(strings.TrimSpace(string(got)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "134 incident_instance_created 1 {") || !strings.HasPrefix(lines[1], "134 incident_instance_updated 2 {") ||
		!strings.Contains(lines[1], `"action":"ESCALATED"`) {
		t.Fatalf("the franz-go example printed:\n%s", got)
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

// TestDocsPicturesExist: every picture README.md and docs/ show is in the repository, a real PNG,
// and docs/api.md shows every console screenshot TestConsoleInBrowser takes.
func TestDocsPicturesExist(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	files = append(files, filepath.Join("..", "..", "README.md"))
	shown := map[string]bool{}
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`!\[[^\]]*\]\(([^)\s]+)\)`).FindAllSubmatch(text, -1) {
			path := filepath.Join(filepath.Dir(f), string(m[1]))
			shown[filepath.Clean(path)] = true
			b, err := os.ReadFile(path)
			if err != nil || !strings.HasPrefix(string(b), "\x89PNG") || len(b) < 10000 {
				t.Errorf("%s shows %s: %v (%d bytes)", f, m[1], err, len(b))
			}
		}
	}
	shots, _ := filepath.Glob(filepath.Join("..", "..", "docs", "screenshots", "*.png"))
	for _, want := range []string{"console-overview", "console-subscriptions", "console-delivery", "console-dead-letters", "console-tenant-portal"} {
		if p := filepath.Join("..", "..", "docs", "screenshots", want+".png"); !shown[p] {
			t.Errorf("no document shows %s (have %v)", p, shots)
		}
	}
}
