package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/kafkatest"
	"github.com/walhook/walhook/sinks/webhook/webhooktest"
)

// chromium finds Debian's chromium. Without it the browser tests skip with the reason, except
// under CI=true (.ci/run installs it), where they fail.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium on PATH: .ci/run installs it (apt-get install chromium); CI must run the browser tests")
	}
	t.Skip("no chromium on PATH: install Debian's chromium (apt-get install chromium) to run the console's browser tests")
	return ""
}

// browser starts headless Chromium with a fresh profile and returns a tab; t.Cleanup closes it
// and checks that no Chromium process of this profile is left.
func browser(t *testing.T, exe string) context.Context {
	t.Helper()
	profile := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.UserDataDir(profile),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1400, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		kafkatest.Eventually(t, 10*time.Second, func() error {
			if pids := processesWith(profile); len(pids) > 0 {
				return fmt.Errorf("chromium processes of profile %s still run: %v", profile, pids)
			}
			return nil
		})
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// processesWith lists the pids whose command line contains s (our own browser's profile).
func processesWith(s string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmd, []byte(s)) && !isZombieName(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

func isZombieName(pid string) bool {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return true
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] == "Z"
}

// waitJS polls a JavaScript condition in the page until it is true.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(100*time.Millisecond),
		chromedp.WithPollingTimeout(45*time.Second))); err != nil {
		text, _ := evalJS[string](ctx, "document.body.innerText")
		t.Fatalf("%s: %v\npage:\n%s", what, err, text)
	}
}

// evalJS evaluates expr in the page (awaiting a promise) and returns its value.
func evalJS[T any](ctx context.Context, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

func mustJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := evalJS[T](ctx, expr)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

func navigate(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigate %s: %v", url, err)
	}
}

// setValue fills a form control as a user would (value, then input and change events).
func setValue(t *testing.T, ctx context.Context, sel, v string) {
	t.Helper()
	js, _ := json.Marshal(v)
	mustJS[bool](t, ctx, fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.value = %s;
		e.dispatchEvent(new Event("input", {bubbles: true})); e.dispatchEvent(new Event("change", {bubbles: true})); return true })()`, sel, js))
}

func click(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	mustJS[bool](t, ctx, fmt.Sprintf(`(() => { document.querySelector(%q).click(); return true })()`, sel))
}

// screenshot saves the tab as docs/screenshots/NAME.png under WALHOOK_UPDATE_SCREENSHOTS=1,
// else in the test's temp dir; either way it must be a real picture.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if len(png) < 10000 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot %s is not a picture (%d bytes)", name, len(png))
	}
	dir := t.TempDir()
	if os.Getenv("WALHOOK_UPDATE_SCREENSHOTS") == "1" {
		dir = filepath.Join("..", "..", "docs", "screenshots")
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// apiCall is a plain call of the dev stack's API (setup outside the browser).
func apiCall(t *testing.T, base, key, method, path string, body any) []byte {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, base+path, r)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, out)
	}
	return out
}

// consoleModel is the demo with retries short enough for a dead letter within a second.
const consoleModel = "deliver: {retry_schedule: [200ms], retry_tiers: [1s], circuit_failures: 100000}\n"

// TestConsoleInBrowser drives the console in headless Chromium against walhook dev: a
// subscription created in the browser receives the next webhook, a dead letter redriven from the
// browser is delivered, and a tenant token's portal shows nothing of another tenant.
func TestConsoleInBrowser(t *testing.T) {
	requirePostgres(t)
	exe := chromium(t)
	d := startDev(t, filepath.Join(t.TempDir(), ".walhook"), consoleModel+demo.ModelYAML)
	base, key := d.env["WALHOOK_API_URL"], d.env["WALHOOK_API_KEY"]
	if !strings.Contains(d.out.String(), "console") || !strings.HasPrefix(key, "whk_") {
		t.Fatalf("the banner shows no console or key:\n%s", d.out)
	}
	recv := webhooktest.Start(t)
	failing := true
	recv.Respond(func(_ int, r webhooktest.Request) webhooktest.Response {
		if strings.HasPrefix(r.Path, "/flaky") && failing {
			return webhooktest.Response{Status: 503, Body: "down for maintenance"}
		}
		return webhooktest.Response{Status: 200, Body: "thanks"}
	})
	waitAPI(t, base)
	d.waitInitialSnapshot()
	execSQL(t, d.env["WALHOOK_PG_URL"], story[0])

	ctx := browser(t, exe)
	navigate(t, ctx, base+"/#key="+key)
	waitJS(t, ctx, "the operator overview", `document.querySelector('[data-test="card-slot-lag"]') !== null && document.querySelector('[data-test="who"]').textContent.includes("operator")`)
	// Everything the page loaded came from walhook itself, the CSP allowing nothing else.
	if loaded := mustJS[[]string](t, ctx, `performance.getEntriesByType("resource").map(e => e.name)`); len(loaded) < 3 {
		t.Fatalf("the console loaded only %v", loaded)
	} else {
		for _, u := range loaded {
			if !strings.HasPrefix(u, base+"/") {
				t.Errorf("the console loaded %s, which is not walhook's", u)
			}
		}
	}
	if resp, err := http.Get(base + "/"); err != nil || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("the console's page has no same-origin Content-Security-Policy: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}

	t.Run("a subscription created in the browser receives the next webhook", func(t *testing.T) {
		navigate(t, ctx, base+"/#/subscriptions")
		waitJS(t, ctx, "the subscription form", `document.querySelector('#sub-form') !== null`)
		setValue(t, ctx, "#sub-new-app", "browser-crm")
		setValue(t, ctx, "#sub-tenant", "acme")
		setValue(t, ctx, "#sub-event", "incident.instance.created")
		setValue(t, ctx, "#sub-url", recv.URL()+"/browser")
		click(t, ctx, "#sub-create")
		waitJS(t, ctx, "the new subscription's secret", `document.querySelector('#created-secret') !== null`)
		uuid := mustJS[string](t, ctx, `document.querySelector("#created-uuid").textContent`)
		secret := mustJS[string](t, ctx, `document.querySelector("#created-secret").textContent`)
		waitJS(t, ctx, "the new subscription listed under acme", fmt.Sprintf(`document.querySelector('[data-test="subs-acme"] tr[data-uuid=%q]') !== null`, uuid))
		screenshot(t, ctx, "console-subscriptions")
		execSQL(t, d.env["WALHOOK_PG_URL"], story[1])
		var got webhooktest.Request
		kafkatest.Eventually(t, 30*time.Second, func() error {
			for _, r := range recv.Requests() {
				if r.Path == "/browser" {
					got = r
					return nil
				}
			}
			return fmt.Errorf("no webhook at /browser yet")
		})
		if err := verifySignature(secret, got); err != nil {
			t.Fatalf("the webhook is not signed with the secret the browser showed: %v", err)
		}
		if !strings.Contains(string(got.Body), `"Face not detected"`) {
			t.Fatalf("webhook body %s", got.Body)
		}
	})

	t.Run("a dead letter redriven from the browser is delivered", func(t *testing.T) {
		var sub struct{ UUID string }
		_ = json.Unmarshal(apiCall(t, base, key, "POST", "/v1/subscriptions", map[string]any{"application": "browser-crm", "tenant": "acme",
			"event": "incident.instance.updated", "url": recv.URL() + "/flaky"}), &sub)
		// The sink reloads subscriptions on NOTIFY; the update below may race it, so it is repeated
		// until the dead letter shows.
		navigate(t, ctx, base+"/#/dead-letters")
		sel := `document.querySelector('#dead-letters tr[data-id]')`
		kafkatest.Eventually(t, 40*time.Second, func() error {
			var dead struct{ Items []json.RawMessage }
			_ = json.Unmarshal(apiCall(t, base, key, "GET", "/v1/dead-letters?subscription="+sub.UUID, nil), &dead)
			if len(dead.Items) == 0 {
				execSQL(t, d.env["WALHOOK_PG_URL"], `update incident.instance set description = 'seen '||now() where id = 134`)
				return fmt.Errorf("no dead letter of subscription %s yet", sub.UUID)
			}
			n, err := evalJS[int](ctx, `document.querySelectorAll('#dead-letters tr[data-id]').length`)
			if err != nil {
				return err
			}
			if n == 0 {
				page, _ := evalJS[string](ctx, `location.hash + " | flash: " + document.querySelector("#flash").textContent + " | " + document.querySelector("main").innerHTML.slice(0, 1500)`)
				return fmt.Errorf("no dead letter in the browser yet; the page: %s; the API has %.1500s", page, apiCall(t, base, key, "GET", "/v1/dead-letters", nil))
			}
			return nil
		})
		webhookID := mustJS[string](t, ctx, sel+`.dataset.webhookId`)
		screenshot(t, ctx, "console-dead-letters")
		failing = false
		click(t, ctx, `#dead-letters tr[data-id] button[data-action="redrive"]`)
		kafkatest.Eventually(t, 30*time.Second, func() error {
			for _, r := range recv.Requests() {
				if r.Header.Get("webhook-id") == webhookID && strings.HasPrefix(r.Path, "/flaky") && r.At.After(time.Now().Add(-20*time.Second)) && !failing {
					return nil
				}
			}
			return fmt.Errorf("the redriven delivery %s has not arrived", webhookID)
		})
		waitJS(t, ctx, "the dead letter shown delivered", fmt.Sprintf(`Array.from(document.querySelectorAll('#dead-letters tr[data-webhook-id=%q] [data-test="state"]')).some(e => e.textContent === "delivered")`, webhookID))

		navigate(t, ctx, base+"/#/deliveries")
		waitJS(t, ctx, "the delivery in the log", fmt.Sprintf(`document.querySelector('#deliveries tr[data-webhook-id=%q]') !== null`, webhookID))
		click(t, ctx, fmt.Sprintf(`#deliveries tr[data-webhook-id=%q]`, webhookID))
		waitJS(t, ctx, "the attempts with the endpoint's answers", `document.querySelector('[data-test="attempts"]') !== null && document.querySelector('[data-test="attempts"]').textContent.includes("down for maintenance") && document.querySelector('[data-test="attempts"]').textContent.includes("thanks")`)
		screenshot(t, ctx, "console-delivery")

		// Retrigger from the delivery's page: one more request with the same webhook-id.
		sent := func() int {
			n := 0
			for _, r := range recv.Requests() {
				if r.Header.Get("webhook-id") == webhookID {
					n++
				}
			}
			return n
		}
		before := sent()
		click(t, ctx, "#retrigger")
		waitJS(t, ctx, "the retrigger's confirmation", `document.querySelector("#flash").textContent.startsWith("re-triggered version")`)
		kafkatest.Eventually(t, 30*time.Second, func() error {
			if n := sent(); n <= before {
				return fmt.Errorf("the retriggered delivery %s has not arrived (%d requests with it)", webhookID, n)
			}
			return nil
		})

		// The overview after all this: dead letters counted, the chart showing the deliveries.
		navigate(t, ctx, base+"/#/overview")
		waitJS(t, ctx, "the overview with the dead letters", `document.querySelector('[data-test="card-dead-letters"]') !== null && !/^DEAD LETTERS\s*0\b/i.test(document.querySelector('[data-test="card-dead-letters"]').innerText)`)
		screenshot(t, ctx, "console-overview")
	})

	t.Run("a tenant token sees only its tenant", func(t *testing.T) {
		res := d.run("api", "key", "create", "--name", "globex-portal", "--tenant", "globex")
		if res.code != 0 {
			t.Fatalf("walhook api key create: %s", res)
		}
		token := field(t, res.stdout, "key")
		var app struct{ ID int64 }
		_ = json.Unmarshal(apiCall(t, base, key, "POST", "/v1/applications", map[string]any{"name": "globex-erp", "tenant": "globex"}), &app)
		var gsub struct{ UUID string }
		_ = json.Unmarshal(apiCall(t, base, key, "POST", "/v1/subscriptions", map[string]any{"application": fmt.Sprint(app.ID), "tenant": "globex",
			"event": "incident.instance.updated", "url": recv.URL() + "/globex"}), &gsub)
		var acme struct{ Items []struct{ UUID string } }
		_ = json.Unmarshal(apiCall(t, base, key, "GET", "/v1/subscriptions?tenant=acme", nil), &acme)

		tctx := browser(t, exe)
		navigate(t, tctx, base+"/#key="+token)
		waitJS(t, tctx, "the tenant portal", `document.querySelector('[data-test="tenant"]') !== null && document.querySelector('[data-test="tenant"]').textContent === "globex"`)
		navigate(t, tctx, base+"/#/subscriptions")
		waitJS(t, tctx, "globex's subscription", fmt.Sprintf(`document.querySelector('tr[data-uuid=%q]') !== null`, gsub.UUID))
		screenshot(t, tctx, "console-tenant-portal")
		for _, view := range []string{"subscriptions", "deliveries", "dead-letters", "overview"} {
			navigate(t, tctx, base+"/#/"+view)
			waitJS(t, tctx, view, fmt.Sprintf(`document.querySelector('[data-test="view-%s"]') !== null && document.querySelector('[data-test="view-%s"]').children.length > 0`, view, view))
			text := mustJS[string](t, tctx, `document.querySelector("main").innerText`)
			if strings.Contains(text, "acme") {
				t.Fatalf("globex's portal shows acme in %s:\n%s", view, text)
			}
			for _, s := range acme.Items {
				if strings.Contains(text, s.UUID) {
					t.Fatalf("globex's portal shows acme's subscription %s in %s", s.UUID, view)
				}
			}
		}
		status := mustJS[int](t, tctx, fmt.Sprintf(`fetch("/v1/subscriptions/%s", {headers: {Authorization: "Bearer " + sessionStorage.getItem("walhook-key")}}).then(r => r.status)`, acme.Items[0].UUID))
		if status != 404 {
			t.Fatalf("globex's token read acme's subscription from the page: %d", status)
		}
	})
}

// verifySignature checks webhook-signature per Standard Webhooks with secret.
func verifySignature(secret string, r webhooktest.Request) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s.%s.%s", r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Body)
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	for _, s := range strings.Fields(r.Header.Get("webhook-signature")) {
		if s == want {
			return nil
		}
	}
	return fmt.Errorf("webhook-signature %q has no %s", r.Header.Get("webhook-signature"), want)
}
