package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/devreceiver"
	"github.com/walhook/walhook/internal/kafkatest"
	"github.com/walhook/walhook/internal/pgtest"
)

// The README's story: a session, an incident, then one transaction that resolves it and adds a
// timeline entry.
var story = []string{
	`insert into session.instance (id, status, tenant_id) values (2523, 'IN_PROGRESS', 'acme')`,
	`insert into incident.instance (id, name, status, severity, start_time, session_instance_id, tenant_id, created_by, updated_by)
	 values (134, 'Face not detected', 'TRIGGERED', 'LOW', now(), 2523, 'acme', 1, 1)`,
	`begin; update incident.instance set status = 'RESOLVED', end_time = now() where id = 134;
	 insert into incident.timeline (incident_instance_id, action, description, tenant_id) values (134, 'ESCALATED', 'Auto-escalated', 'acme'); commit`,
}

func execSQL(t *testing.T, url string, stmts ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func field(t *testing.T, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `: (\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q line in:\n%s", name, out)
	}
	return m[1]
}

// tailLines parses `walhook tail` output.
func tailLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("tail line %q is not JSON: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

var isoMicros = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)
var isoMillis = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

// TestDevStack follows README.md on the real binary: `walhook dev`, then in "another
// terminal" (dev.env's variables, no flags, no walhook.yaml in the directory) status, the
// story, tail, hooks and config validate; Ctrl-C; a second start on the same folder.
func TestDevStack(t *testing.T) {
	requirePostgres(t)
	dir := filepath.Join(t.TempDir(), ".walhook")
	d := startDev(t, dir, "")
	p := d.prefix

	t.Run("dev.env names the config", func(t *testing.T) {
		if d.env["WALHOOK_CONFIG"] != filepath.Join(dir, "walhook.yaml") {
			t.Fatalf("WALHOOK_CONFIG=%q, want %s", d.env["WALHOOK_CONFIG"], filepath.Join(dir, "walhook.yaml"))
		}
		for _, k := range []string{"WALHOOK_PG_URL", "WALHOOK_BROKERS", "WALHOOK_RECEIVER_URL"} {
			if d.env[k] == "" {
				t.Errorf("%s missing from dev.env: %v", k, d.env)
			}
		}
		raw, _ := os.ReadFile(filepath.Join(dir, "dev.env"))
		if want := "export PATH='" + filepath.Dir(d.bin) + "'"; !strings.Contains(string(raw), want) {
			t.Errorf("dev.env does not put the binary's directory on PATH (%s):\n%s", want, raw)
		}
	})

	t.Run("metrics where the banner says", func(t *testing.T) {
		m := regexp.MustCompile(`metrics\s+(http://127\.0\.0\.1:\d+/metrics)`).FindStringSubmatch(d.out.String())
		if m == nil || strings.HasSuffix(m[1], ":0/metrics") {
			t.Fatalf("banner without a usable metrics address:\n%s", d.out)
		}
		resp, err := http.Get(m[1])
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", m[1], resp.Status)
		}
	})

	t.Run("the banner is the README's, and its console and key work at once", func(t *testing.T) {
		readme, err := os.ReadFile("../../README.md")
		if err != nil {
			t.Fatal(err)
		}
		block := regexp.MustCompile("(?s)```\nwalhook dev\n(.*?)  \\.\\.\\.\n```").FindSubmatch(readme)
		if block == nil {
			t.Fatal("README.md has no walhook dev banner block")
		}
		out := d.out.String()
		banner := out[strings.Index(out, "walhook dev\n")+len("walhook dev\n"):]
		banner = banner[:strings.Index(banner, "  written to ")]
		shape := func(text string) []string { // each line's name and what follows its address
			var out []string
			for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
				f := append(strings.Fields(l), "", "") // an empty value (no registry) leaves only the name
				out = append(out, f[0]+" "+strings.TrimSpace(strings.Join(f[2:], " ")))
			}
			return out
		}
		if got, want := shape(banner), shape(string(block[1])); !slices.Equal(got, want) {
			t.Fatalf("walhook dev prints\n%s\nREADME.md shows\n%s", banner, block[1])
		}
		m := regexp.MustCompile(`(?m)^  console\s+(http://127\.0\.0\.1:\d+/)\s`).FindStringSubmatch(out)
		if m == nil || m[1] != d.env["WALHOOK_API_URL"]+"/" {
			t.Fatalf("the console URL is not WALHOOK_API_URL's:\n%s", banner)
		}
		key := regexp.MustCompile(`(?m)^  WALHOOK_API_KEY\s+(whk_\S+)$`).FindStringSubmatch(out)
		if key == nil || key[1] != d.env["WALHOOK_API_KEY"] {
			t.Fatalf("no operator key in the banner:\n%s", banner)
		}
		resp, err := http.Get(m[1])
		if err != nil {
			t.Fatalf("the console the banner shows does not answer: %v", err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "walhook") {
			t.Fatalf("GET %s: %s %.200s", m[1], resp.Status, page)
		}
		if me := apiCall(t, d.env["WALHOOK_API_URL"], key[1], "GET", "/v1/me", nil); !strings.Contains(string(me), `"role":"operator"`) {
			t.Fatalf("the banner's key: %s", me)
		}
	})

	t.Run("quiet start", func(t *testing.T) {
		if strings.Contains(d.out.String(), "effective configuration") {
			t.Errorf("the effective config is logged at info level:\n%s", d.out)
		}
	})

	t.Run("a second demo in the same folder is refused", func(t *testing.T) {
		start := time.Now()
		r := runBinary(t, d.bin, d.envWith(nil), "dev", "--dir", dir, "--http-listen", "127.0.0.1:0")
		want := fmt.Sprintf("another walhook dev already runs in %s (process %d)", dir, d.cmd.Process.Pid)
		if r.code != 1 || !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, "postmaster.pid") {
			t.Fatalf("second dev: %v\nwant exit 1 with %q", r, want)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("the refusal took %v; it should come before any server starts", took)
		}
	})

	t.Run("version", func(t *testing.T) {
		for _, args := range [][]string{{"--version"}, {"version"}} {
			if r := d.run(args...); r.code != 0 || !strings.HasPrefix(r.stdout, "walhook dev") || !strings.Contains(r.stdout, "go1.") {
				t.Errorf("walhook %v: %v", args, r)
			}
		}
	})

	t.Run("status needs no flags", func(t *testing.T) {
		var r result
		kafkatest.Eventually(t, 30*time.Second, func() error {
			if r = d.run("status"); r.code != 0 || !strings.Contains(r.stdout, "slot walhook: active") {
				return fmt.Errorf("%v", r)
			}
			return nil
		})
		for _, want := range []string{p + "bubbleup", p + "snapshots.incident.instance", "dead letters: 0 in " + p + "webhook.dlq", "disabled subscriptions: 0"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("status lacks %q:\n%s", want, r.stdout)
			}
		}
	})

	execSQL(t, d.env["WALHOOK_PG_URL"], story...)
	d.waitOutput("✓ webhook incident_instance_created  version 1", 30*time.Second)
	d.waitOutput("✓ webhook incident_instance_updated  version 2", 30*time.Second)

	t.Run("lag does not count transaction markers", func(t *testing.T) {
		// The snapshot topic is written in Kafka transactions: its last entries are commit
		// markers, past the last record the webhook group consumed.
		r := d.run("tail", "--topic", p+"snapshots.incident.instance", "--from-beginning", "--end")
		if r.code != 0 {
			t.Fatalf("tail: %v", r)
		}
		last := map[int32]int64{}
		for _, l := range tailLines(t, r.stdout) {
			last[int32(l["partition"].(float64))] = int64(l["offset"].(float64))
		}
		ends := endOffsets(t, d.env["WALHOOK_BROKERS"], p+"snapshots.incident.instance")
		markers := false
		for part, off := range last {
			markers = markers || ends[part] > off+1
		}
		if !markers {
			t.Fatalf("no transaction marker after the last snapshot (last %v, ends %v): the test would prove nothing", last, ends)
		}
		kafkatest.Eventually(t, 30*time.Second, func() error {
			if r := d.run("status", "--max-consumer-lag", "0"); r.code != 0 {
				return fmt.Errorf("%v", r)
			}
			return nil
		})
	})

	t.Run("tail prints plain JSON", func(t *testing.T) {
		r := d.run("tail", "--topic", p+"changes.incident.instance", "--from-beginning", "--end")
		if r.code != 0 || strings.Contains(r.stdout, `{"string":`) || strings.Contains(r.stdout, `{"long`) {
			t.Fatalf("tail of the change topic: %v", r)
		}
		var create, txnEnd map[string]any
		for _, l := range tailLines(t, r.stdout) {
			v, _ := l["value"].(map[string]any)
			switch {
			case l["schema"] == "walhook.incident.instance.Change" && v["op"] == "create":
				create = v
			case l["schema"] == "walhook.TxnEnd":
				txnEnd = v
			}
		}
		after, _ := create["after"].(map[string]any)
		if after["severity"] != "LOW" || after["id"] != float64(134) || after["end_time"] != nil ||
			!isoMicros.MatchString(fmt.Sprint(after["start_time"])) || !isoMicros.MatchString(fmt.Sprint(create["commit_time"])) {
			t.Errorf("change record: %v; want plain values, ISO timestamps", create)
		}
		if txnEnd["root_key"] != "134" || txnEnd["rows"] == nil {
			t.Errorf("transaction end: %v", txnEnd)
		}
		r = d.run("tail", "--topic", p+"compliance.incident.instance", "--from-beginning", "--end")
		if r.code != 0 || strings.Contains(r.stdout, `{"string":`) {
			t.Fatalf("tail of the compliance topic: %v", r)
		}
		lines := tailLines(t, r.stdout)
		if len(lines) != 2 {
			t.Fatalf("%d compliance records, want versions 1 and 2:\n%s", len(lines), r.stdout)
		}
		v := lines[1]["value"].(map[string]any)
		snap := v["snapshot"].(map[string]any)
		timeline, _ := snap["timeline"].([]any)
		if v["version"] != float64(2) || snap["status"] != "RESOLVED" || len(timeline) != 1 || !isoMillis.MatchString(fmt.Sprint(snap["end_time"])) ||
			snap["session"].(map[string]any)["status"] != "IN_PROGRESS" {
			t.Errorf("compliance version 2: %v", v)
		}
	})

	t.Run("tail refuses up front", func(t *testing.T) {
		r := d.run("tail", "--topic", p+"nope", "--timeout", "5s")
		if r.code != 1 || !strings.Contains(r.stderr, "topic "+p+"nope does not exist") || !strings.Contains(r.stderr, p+"snapshots.incident.instance") {
			t.Errorf("unknown topic: %v", r)
		}
		start := time.Now()
		r = d.run("tail", "--topic", p+"snapshots.incident.instance", "--brokers", "127.0.0.1:1", "--timeout", "2s")
		if r.code != 1 || !strings.Contains(r.stderr, "no broker of [127.0.0.1:1] answered") || !strings.Contains(r.stderr, "connection refused") {
			t.Errorf("unreachable broker: %v", r)
		}
		if took := time.Since(start); took > 15*time.Second {
			t.Errorf("tail took %v to give up with --timeout 2s", took)
		}
		if d.real && os.Getenv(kafkatest.EnvRegistryURL) == "" {
			return // no registry: the records are single-object encoded, readable without one
		}
		r = runBinary(t, d.bin, d.envWith(map[string]string{"WALHOOK_CONFIG": "", "WALHOOK_REGISTRY_URL": ""}),
			"tail", "--topic", p+"snapshots.incident.instance", "--from-beginning", "--end", "--max", "1")
		if r.code != 0 || !strings.Contains(r.stderr, "no schema registry: pass --registry URL") || !strings.Contains(r.stdout, "schema id") {
			t.Errorf("no registry for Confluent-framed records: %v; want the hint", r)
		}
	})

	t.Run("config validate", func(t *testing.T) {
		if r := d.run("config", "validate"); r.code != 0 || !strings.HasPrefix(r.stdout, filepath.Join(dir, "walhook.yaml")+": ok (1 roots, 3 tables); not checked against a database") {
			t.Errorf("validate: %v", r)
		}
		if r := d.run("config", "validate", "--check-db"); r.code != 0 || !strings.Contains(r.stdout, "checked against PostgreSQL") || !strings.Contains(r.stdout, "3 tables") {
			t.Errorf("validate --check-db: %v", r)
		}
	})

	t.Run("status says unknown, not zero", func(t *testing.T) {
		r := d.run("status", "--brokers", "127.0.0.1:1", "--timeout", "2s")
		if r.code != 1 || !strings.Contains(r.stdout, "dead letters: unknown (Kafka not reachable") ||
			!strings.Contains(r.stdout, "oldest undelivered: unknown (Kafka not reachable") || strings.Contains(r.stdout, "dead letters: 0") ||
			!strings.Contains(r.stdout, "slot walhook: active") {
			t.Errorf("status with the broker down: %v", r)
		}
		r = d.run("status", "--brokers", "127.0.0.1:1", "--timeout", "2s", "--json")
		var rep map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("--json: %v\n%v", err, r)
		}
		if dl := rep["dead_letters"].(map[string]any); dl["records"] != nil || dl["unknown"] == nil {
			t.Errorf("--json dead letters with the broker down: %v; want records null and the reason", dl)
		}
	})

	t.Run("poison records do not stop the pipeline", func(t *testing.T) { poisonAgainstDev(t, d) })

	var devSubs []string
	t.Run("hooks", func(t *testing.T) {
		devSubs = hooksAgainstDev(t, d)
	})

	disabledBefore := regexp.MustCompile(`disabled subscriptions: \d+`).FindString(d.run("status").stdout)
	d.stop()

	t.Run("a restart replaces the demo's subscriptions", func(t *testing.T) {
		d2 := startDev(t, dir, "")
		r := d2.run("hooks", "list", "--app", devApp)
		var uuids []string
		for _, m := range regexp.MustCompile(`(?m)^\d+\s+(\S+)\s+\d+\s+acme\s+\S+\s+POST\s+(\S+)\s+bare\s+false\s+true`).FindAllStringSubmatch(r.stdout, -1) {
			uuids = append(uuids, m[1])
			if !strings.HasPrefix(m[2], d2.env["WALHOOK_RECEIVER_URL"]+"/") {
				t.Errorf("subscription %s still points at %s, not the new receiver %s", m[1], m[2], d2.env["WALHOOK_RECEIVER_URL"])
			}
		}
		slices.Sort(uuids)
		if !slices.Equal(uuids, devSubs) {
			t.Errorf("walhook-dev's enabled subscriptions after a restart: %v, want the same %v\n%s", uuids, devSubs, r.stdout)
		}
		if got := regexp.MustCompile(`disabled subscriptions: \d+`).FindString(d2.run("status").stdout); got != disabledBefore {
			t.Errorf("after a restart %q, before %q: the demo's subscriptions piled up", got, disabledBefore)
		}
		execSQL(t, d2.env["WALHOOK_PG_URL"], `update incident.instance set severity = 'HIGH' where id = 134`)
		d2.waitOutput("✓ webhook incident_instance_updated", 30*time.Second) // the moved subscription, verified with its kept secret

		// The repro: a 1 MiB description made cdc exit with MESSAGE_TOO_LARGE at every
		// start. It is carried as chunks; the demo's subscriptions get a thin event (the payload
		// is above deliver.max_payload_bytes), and the next incident is delivered as usual.
		execSQL(t, d2.env["WALHOOK_PG_URL"], `insert into incident.instance (id, name, description, status, severity, start_time, session_instance_id, tenant_id)
			values (135, 'big', repeat('x', 1048576), 'TRIGGERED', 'LOW', now(), 2523, 'acme')`)
		d2.waitOutput(`"root_key": "135"`, 60*time.Second)
		if out := d2.out.String(); !strings.Contains(out, `"payload_omitted": "size"`) {
			t.Fatalf("no thin event for the 1 MiB incident:\n%s", out)
		}
		execSQL(t, d2.env["WALHOOK_PG_URL"], `insert into incident.instance (id, name, status, severity, start_time, session_instance_id, tenant_id)
			values (136, 'small', 'TRIGGERED', 'LOW', now(), 2523, 'acme')`)
		d2.waitOutput(`"id": 136`, 30*time.Second)
		d2.stop()
	})
}

func endOffsets(t *testing.T, brokers, topic string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// hooksAgainstDev registers an application and subscribes an endpoint of the test's own, as the
// README tells a user to, checks what is refused and that no secret leaks, and returns the
// sorted uuids of walhook-dev's subscriptions.
func hooksAgainstDev(t *testing.T, d *devStack) []string {
	r := d.run("hooks", "apps")
	if r.code != 0 || !regexp.MustCompile(`walhook-dev\s+3\s+3`).MatchString(r.stdout) {
		t.Fatalf("hooks apps: %v", r)
	}
	r = d.run("hooks", "list", "--app", devApp)
	var devSubs []string
	for _, m := range regexp.MustCompile(`(?m)^\d+\s+([0-9a-f-]{36})\s`).FindAllStringSubmatch(r.stdout, -1) {
		devSubs = append(devSubs, m[1])
	}
	slices.Sort(devSubs)
	if len(devSubs) != 3 {
		t.Fatalf("walhook-dev has %d subscriptions, want one per event:\n%v", len(devSubs), r)
	}

	var got syncBuffer
	recv, err := devreceiver.Listen(&got)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- recv.Run(ctx) }()
	defer func() { cancel(); <-stopped }()

	r = d.run("hooks", "register-app", "--name", "crm")
	if r.code != 0 {
		t.Fatalf("register-app: %v", r)
	}
	r = d.run("hooks", "subscribe", "--app", "crm", "--tenant", "acme", "--event", "incident.instance.updated", "--url", recv.URL()+"/crm")
	if r.code != 0 {
		t.Fatalf("subscribe: %v", r)
	}
	uuid, secret := field(t, r.stdout, "uuid"), field(t, r.stdout, "secret")
	if err := recv.Trust("/crm", secret); err != nil {
		t.Fatal(err)
	}
	delivered := func(n int) {
		t.Helper()
		kafkatest.Eventually(t, 30*time.Second, func() error {
			if c := strings.Count(got.String(), "✓ webhook incident_instance_updated"); c < n || strings.Contains(got.String(), "✗") {
				return fmt.Errorf("%d verified deliveries, want %d:\n%s", c, n, got.String())
			}
			return nil
		})
	}
	execSQL(t, d.env["WALHOOK_PG_URL"], `update incident.instance set severity = 'MEDIUM' where id = 134`)
	delivered(1)
	if r = d.run("hooks", "update", "--uuid", uuid, "--url", recv.URL()+"/crm2"); r.code != 0 {
		t.Fatalf("update: %v", r)
	}
	if err := recv.Trust("/crm2", secret); err != nil {
		t.Fatal(err)
	}
	if r = d.run("hooks", "unsubscribe", "--uuid", uuid); r.code != 0 {
		t.Fatalf("unsubscribe: %v", r)
	}
	if r = d.run("hooks", "enable", "--uuid", uuid); r.code != 0 || !strings.Contains(r.stdout, "enabled "+uuid) {
		t.Fatalf("enable: %v", r)
	}
	execSQL(t, d.env["WALHOOK_PG_URL"], `update incident.instance set severity = 'HIGH' where id = 134`)
	delivered(2)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--event", "candidate.created"}, "--event: \"candidate.created\" is not an event of the model; its events are incident.instance.created, incident.instance.updated, incident.instance.deleted"},
		{[]string{"--url", "https://"}, `--url: "https://" has no host`},
		{[]string{"--url", "https://ops:pa55word@hooks.example.com/x"}, "--url: https://ops:xxxxx@hooks.example.com/x carries a user name or password"},
		{[]string{"--url", "https://10.1.2.3/x"}, "add it to deliver.allow_cidrs"},
		{[]string{"--url", "ftp://hooks.example.com/x"}, `scheme "ftp"`},
		{[]string{"--app", "999"}, `unknown application "999"`},
	} {
		args := map[string]string{"--app": "crm", "--tenant": "acme", "--event": "incident.instance.created", "--url": "https://93.184.215.14/x"}
		for i := 0; i < len(tc.args); i += 2 {
			args[tc.args[i]] = tc.args[i+1]
		}
		cmd := []string{"hooks", "subscribe"}
		for k, v := range args {
			cmd = append(cmd, k, v)
		}
		r := d.run(cmd...)
		if r.code != 1 || !strings.Contains(r.stderr, "walhook: ") || !strings.Contains(r.stderr, tc.want) ||
			strings.Contains(r.stderr, "SQLSTATE") || strings.Contains(r.stderr, "pa55word") || strings.Contains(r.stderr, "Usage:") {
			t.Errorf("subscribe %v: %v\nwant exit 1 with %q", tc.args, r, tc.want)
		}
	}
	if r := d.run("hooks", "register-app", "--name", "crm"); r.code != 1 || !strings.Contains(r.stderr, `"crm" is application`) || strings.Contains(r.stderr, "SQLSTATE") {
		t.Errorf("duplicate app: %v", r)
	}

	// A token in an endpoint's query is masked wherever walhook shows or logs the URL: list,
	// the attempt log, the sink's log lines. Signing secrets appear only in subscribe's output.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	const token = "t0kenS3cret"
	r = d.run("hooks", "subscribe", "--app", "crm", "--tenant", "acme", "--event", "incident.instance.updated",
		"--url", "http://"+closed+"/hook?token="+token)
	if r.code != 0 || strings.Contains(r.stdout, token) {
		t.Fatalf("subscribe with a token: %v", r)
	}
	leaky := field(t, r.stdout, "uuid")
	execSQL(t, d.env["WALHOOK_PG_URL"], `update incident.instance set severity = 'LOW' where id = 134`)
	var log result
	kafkatest.Eventually(t, 30*time.Second, func() error {
		if log = d.run("hooks", "log", "--uuid", leaky); !strings.Contains(log.stdout, "retry") {
			return fmt.Errorf("no failed attempt yet: %v", log)
		}
		return nil
	})
	list := d.run("hooks", "list")
	for name, out := range map[string]string{"hooks log": log.stdout, "hooks list": list.stdout, "walhook dev's log": d.out.String()} {
		if strings.Contains(out, token) {
			t.Errorf("%s shows the URL's token:\n%s", name, out)
		}
		if strings.Contains(out, "whsec_") {
			t.Errorf("%s shows a signing secret:\n%s", name, out)
		}
	}
	if !strings.Contains(list.stdout, "token=xxxxx") {
		t.Errorf("hooks list should show the masked URL:\n%s", list.stdout)
	}
	if r := d.run("hooks", "unsubscribe", "--uuid", leaky); r.code != 0 {
		t.Errorf("unsubscribe: %v", r)
	}
	return devSubs
}

// TestDevOwnModel: `walhook dev --config FILE --schema FILE.sql` runs a model of one's own,
// here the demo's incident plus a second root type, a candidate with nested projects and
// technologies (docs/operations.md, "Adding a root type"), and the built-in receiver gets
// both roots' events.
func TestDevOwnModel(t *testing.T) {
	requirePostgres(t)
	schema := filepath.Join(t.TempDir(), "talent.sql")
	if err := os.WriteFile(schema, []byte(talentSQL), 0o600); err != nil {
		t.Fatal(err)
	}
	model, err := os.ReadFile("../../docs/examples/two-roots.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := startDev(t, filepath.Join(t.TempDir(), ".walhook"), string(model), "--schema", schema)
	for _, e := range []string{"incident.instance.created", "talent.candidate.created", "talent.candidate.deleted"} {
		if !strings.Contains(d.out.String(), e) {
			t.Errorf("the receiver is not subscribed to %s:\n%s", e, d.out)
		}
	}
	if r := d.run("config", "validate", "--check-db"); r.code != 0 || !strings.Contains(r.stdout, "ok (2 roots, 6 tables)") {
		t.Errorf("validate: %v", r)
	}
	kafkatest.Eventually(t, 30*time.Second, func() error {
		if r := d.run("status"); !strings.Contains(r.stdout, "slot walhook: active") {
			return fmt.Errorf("%v", r)
		}
		return nil
	})
	execSQL(t, d.env["WALHOOK_PG_URL"],
		`insert into talent.candidate (id, name, tenant_id) values (7, 'Ada', 'acme')`,
		`begin; insert into talent.project (id, candidate_id, title, tenant_id) values (70, 7, 'Engine', 'acme');
		 insert into talent.project_technology (id, project_id, name, tenant_id) values (700, 70, 'Go', 'acme'); commit`)
	d.waitOutput("✓ webhook talent_candidate_created  version 1", 30*time.Second)
	d.waitOutput("✓ webhook talent_candidate_updated  version 2", 30*time.Second)
	// The body follows its header line through the pipe, maybe in a later chunk.
	kafkatest.Eventually(t, 10*time.Second, func() error {
		out := d.out.String()
		v2 := out[strings.Index(out, "talent_candidate_updated  version 2"):]
		if !strings.Contains(v2, `"technologies": [`) || !strings.Contains(v2, `"old": {`) || !strings.Contains(v2, `"name": "Go"`) {
			return fmt.Errorf("version 2 should be {old, new} with the project's technologies:\n%s", v2)
		}
		if strings.Contains(out, "password_hash") {
			return fmt.Errorf("an excluded column is in a payload:\n%s", out)
		}
		return nil
	})
	d.stop()
}

// TestDevOnExistingServers is the README's `walhook dev --pg-url URL --brokers HOST:PORT`: the
// demo on a PostgreSQL and a Kafka it did not start (a database of the test cluster with a slot
// of its own, and the test broker).
func TestDevOnExistingServers(t *testing.T) {
	requirePostgres(t)
	url := pgtest.NewDatabase(t, pgtest.Start(t))
	slot := fmt.Sprintf("devtest_%d", time.Now().UnixNano())
	t.Cleanup(func() { dropSlot(t, url, slot) })
	var args []string
	if !realKafka() { // startDev passes the real brokers itself
		env := kafkatest.Start(t)
		args = []string{"--brokers", strings.Join(env.Brokers, ","), "--registry", env.RegistryURL}
	}
	d := startDev(t, filepath.Join(t.TempDir(), ".walhook"), fmt.Sprintf("postgres: {slot: %s}\n%s", slot, demo.ModelYAML),
		append(args, "--pg-url", url)...)
	if d.env["WALHOOK_PG_URL"] != url || d.pgPid != 0 {
		t.Fatalf("dev.env WALHOOK_PG_URL=%q (postmaster %d), want the given %s and no embedded server", d.env["WALHOOK_PG_URL"], d.pgPid, url)
	}
	kafkatest.Eventually(t, 30*time.Second, func() error {
		if r := d.run("status"); !strings.Contains(r.stdout, "slot "+slot+": active") {
			return fmt.Errorf("%v", r)
		}
		return nil
	})
	execSQL(t, url, story...)
	d.waitOutput("✓ webhook incident_instance_updated  version 2", 30*time.Second)
	d.stop()
}

func dropSlot(t *testing.T, url, slot string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return
	}
	defer conn.Close(context.Background())
	_, _ = conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot)
}

// TestDevRefusesAModelThatDoesNotMatch: --config naming tables that do not exist stops before
// any stage starts, with the config's problems and the fix.
func TestDevRefusesAModelThatDoesNotMatch(t *testing.T) {
	requirePostgres(t)
	model := filepath.Join(t.TempDir(), "model.yaml")
	if err := os.WriteFile(model, []byte("model:\n  roots:\n    - {table: talent.candidate, key: id}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runBinary(t, walhookBinary(t), os.Environ(), "dev", "--dir", filepath.Join(t.TempDir(), ".walhook"), "--http-listen", "127.0.0.1:0", "--config", model)
	if r.code != 1 || !strings.Contains(r.stderr, "table talent.candidate does not exist") || !strings.Contains(r.stderr, "--schema FILE.sql") ||
		!strings.Contains(r.stderr, model+":3:") {
		t.Errorf("dev with a model of missing tables: %v", r)
	}
}

// TestMakeRunCtrlC is `make run` and Ctrl-C in its terminal: the signal goes to the whole
// process group (make and the binary; the embedded servers have their own group), walhook
// must stop cleanly with exit 0, and make must not print an error.
func TestMakeRunCtrlC(t *testing.T) {
	requirePostgres(t)
	mk, err := exec.LookPath("make")
	if err != nil {
		t.Skip("make is not installed")
	}
	tmp := t.TempDir()
	dir := filepath.Join(tmp, ".walhook")
	cmd := exec.Command(mk, "-C", "../..", "run", "BIN="+filepath.Join(tmp, "walhook"),
		"DEVFLAGS=--dir "+dir+" --http-listen 127.0.0.1:0"+realKafkaFlags(t))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	kafkatest.Eventually(t, 5*time.Minute, func() error { // the first build may compile
		if !strings.Contains(out.String(), "walhook dev is ready") {
			return fmt.Errorf("not ready:\n%s", out.String())
		}
		return nil
	})
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil { // what the terminal does
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		// make itself dies of the SIGINT it got (GNU make re-raises it once its children are
		// done, exit status 130 in the shell, as for any command interrupted by Ctrl-C); what
		// matters is that walhook stopped cleanly: make reports a failing or killed recipe
		// with "*** [run] Error N" or "*** [run] Interrupt", and walhook with a log line.
		var ee *exec.ExitError
		interrupted := errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGINT
		if (err != nil && !interrupted) || strings.Contains(out.String(), "***") || !strings.Contains(out.String(), "stopped cleanly") {
			t.Fatalf("make run after Ctrl-C: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("make run did not stop within 30s of Ctrl-C:\n%s", out.String())
	}
}

// realKafkaFlags points `make run` at WALHOOK_TEST_BROKERS with a topic prefix of the test's.
func realKafkaFlags(t *testing.T) string {
	if !realKafka() {
		return ""
	}
	brokers := strings.Join(kafkatest.Start(t).Brokers, ",")
	prefix := kafkatest.TopicName(t, "make") + "."
	precreateChangelog(t, brokers, prefix)
	path := filepath.Join(t.TempDir(), "model.yaml")
	model, err := os.ReadFile(filepath.Join(testdataDir, "demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	model = []byte(strings.Replace(string(model), "topic_prefix: walhook.", "topic_prefix: "+prefix, 1))
	if err := os.WriteFile(path, model, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteTopics(t, brokers, prefix) })
	return " --brokers " + brokers + " --config " + path
}

// talentSQL is the second root type's tables, as docs/examples/talent.sql ships them.
var talentSQL = func() string {
	b, err := os.ReadFile("../../docs/examples/talent.sql")
	if err != nil {
		return "-- docs/examples/talent.sql: " + strconv.Quote(err.Error())
	}
	return string(b)
}()

// poisonAgainstDev writes records no stage can decode, with a plain producer, to the change topic
// (bubble-up's input) and the snapshot topic (the webhook and compliance sinks' input): the next
// transaction in PostgreSQL is delivered, the slot's confirmed_flush_lsn moves on, each stage
// dead-lettered its record, status counts them, and a redrive puts bubble-up's back on the
// change topic (where it is dead-lettered again: it is still garbage).
func poisonAgainstDev(t *testing.T, d *devStack) {
	p := d.prefix
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(d.env["WALHOOK_BROKERS"], ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bad := []*kgo.Record{
		{Topic: p + "changes.incident.instance", Key: []byte("134"), Value: []byte("not a change record")},
		{Topic: p + "snapshots.incident.instance", Key: []byte("134"), Value: []byte("not a snapshot")},
	}
	if err := cl.ProduceSync(ctx, bad...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	confirmed := func() string {
		conn, err := pgx.Connect(ctx, d.env["WALHOOK_PG_URL"])
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var lsn string
		if err := conn.QueryRow(ctx, `select confirmed_flush_lsn::text from pg_replication_slots where slot_name = 'walhook'`).Scan(&lsn); err != nil {
			t.Fatal(err)
		}
		return lsn
	}
	before := confirmed()
	start := time.Now()
	execSQL(t, d.env["WALHOOK_PG_URL"], `update incident.instance set severity = 'MEDIUM' where id = 134`)
	d.waitOutput("✓ webhook incident_instance_updated  version 3", 30*time.Second)
	t.Logf("the transaction after the poison records was delivered in %v", time.Since(start))
	kafkatest.Eventually(t, 30*time.Second, func() error {
		if now := confirmed(); now == before {
			return fmt.Errorf("confirmed_flush_lsn still %s", now)
		}
		return nil
	})
	kafkatest.Eventually(t, 30*time.Second, func() error {
		r := d.run("dlq", "list")
		for _, want := range []string{"bubbleup", "compliance", "deliver"} {
			if !regexp.MustCompile(`(?m)^` + want + `\s+\d+-\d+\s+\S+\s+` + regexp.QuoteMeta(p)).MatchString(r.stdout) {
				return fmt.Errorf("dlq list has no poison record of %s: %v", want, r)
			}
		}
		return nil
	})
	if r := d.run("status"); !strings.Contains(r.stdout, "poison records of bubbleup: 1 in "+p+"bubbleup.poison") {
		t.Errorf("status does not count bubble-up's poison record:\n%s", r.stdout)
	}
	if r := d.run("dlq", "redrive", "--stage", "bubbleup", "--all"); r.code != 0 || !strings.Contains(r.stdout, "redrove 1 poison records") {
		t.Fatalf("dlq redrive: %v", r)
	}
	kafkatest.Eventually(t, 30*time.Second, func() error {
		r := d.run("dlq", "list", "--stage", "bubbleup")
		if n := strings.Count(r.stdout, "changes.incident.instance["); n != 2 {
			return fmt.Errorf("%d bubble-up poison records after the redrive, want 2 (the redriven one dead-lettered again): %v", n, r)
		}
		return nil
	})
}
