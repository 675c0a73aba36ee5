package compliance_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"
	"go.yaml.in/yaml/v3"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/sinks/compliance"
)

// load is roots × versions snapshots, versions of one root in order.
func load(roots, versions int) []avro.Snapshot {
	out := make([]avro.Snapshot, 0, roots*versions)
	for v := 1; v <= versions; v++ {
		for k := 1; k <= roots; k++ {
			out = append(out, incident(1000+k, int64(v)))
		}
	}
	return out
}

// checkExactlyOnce reads topic (read_committed) and checks every (key, version) of roots ×
// versions appears exactly once, in version order per key.
func (h *harness) checkExactlyOnce(topic string, roots, versions int) {
	h.t.Helper()
	want := roots * versions
	got := h.consume(topic, want)
	if extra := h.committed(topic, 2*time.Second); extra != want {
		h.t.Fatalf("%s: %d committed records, want exactly %d", topic, extra, want)
	}
	last := map[string]int64{}
	for _, d := range got {
		v := d.value["version"].(int64)
		if v != last[d.key]+1 {
			h.t.Fatalf("%s: key %s version %d after version %d: duplicate, gap or reorder", topic, d.key, v, last[d.key])
		}
		last[d.key] = v
	}
	if len(last) != roots {
		h.t.Fatalf("%s: %d keys, want %d", topic, len(last), roots)
	}
}

func TestRestartMidLoadKeepsExactlyOnce(t *testing.T) {
	h := newHarness(t, demo.ModelYAML)
	const roots, versions = 60, 5
	h.produce(load(roots, versions)...)
	stop, _ := h.run(compliance.WithMaxPollRecords(7))
	h.consume(h.logTopic(), 60) // some, not all, are committed
	if err := stop(); err != nil {
		t.Fatalf("first sink: %v", err)
	}
	h.run(compliance.WithMaxPollRecords(50), compliance.WithLogger(zaptest.NewLogger(t)))
	h.checkExactlyOnce(h.logTopic(), roots, versions)
	h.checkLatest(roots, versions)
}

// checkLatest checks the compacted latest topic: compaction may have removed older versions, but
// what is left rises per key and ends at the last version of every root.
func (h *harness) checkLatest(roots, versions int) {
	h.t.Helper()
	got := h.consume(h.latestTopic(), roots)
	for len(got) > 0 && h.committed(h.latestTopic(), 2*time.Second) > len(got) {
		got = h.consume(h.latestTopic(), h.committed(h.latestTopic(), 2*time.Second))
	}
	last := map[string]int64{}
	for _, d := range got {
		v := d.value["version"].(int64)
		if v <= last[d.key] {
			h.t.Fatalf("latest topic: key %s version %d after version %d", d.key, v, last[d.key])
		}
		last[d.key] = v
	}
	for k, v := range last {
		if v != int64(versions) {
			h.t.Fatalf("latest topic: key %s ends at version %d, want %d", k, v, versions)
		}
	}
	if len(last) != roots {
		h.t.Fatalf("latest topic: %d keys, want %d", len(last), roots)
	}
}

// Environment of the child process of TestKill9MidLoad.
const (
	envChild       = "WALHOOK_COMPLIANCE_TEST_CHILD"
	envChildConfig = "WALHOOK_COMPLIANCE_TEST_CONFIG"
)

// TestKill9MidLoad runs the sink in a child process (this test binary), kills it with SIGKILL
// while it is writing, then finishes the load with a new sink in the same group: every version
// appears exactly once in read_committed order.
func TestKill9MidLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	h := newHarness(t, demo.ModelYAML)
	const roots, versions = 100, 6
	// The load is produced in version waves around the kill, so however fast the child is, part
	// of the load arrives while it runs and the rest only after it died: it cannot finish first.
	all := load(roots, versions)
	h.produce(all[:2*roots]...)

	cfgYAML, err := yaml.Marshal(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/config.yaml"
	if err := os.WriteFile(path, cfgYAML, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestComplianceChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), envChild+"=1", envChildConfig+"="+path)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	t.Cleanup(func() {
		if !waited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("child output:\n%s", out.String())
		}
	})
	h.consume(h.logTopic(), 120)
	h.produce(all[2*roots : 3*roots]...) // the child is mid-load
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waited = true
	if n := h.committed(h.logTopic(), time.Second); n >= roots*versions {
		t.Logf("child output:\n%s", out.String())
		t.Fatalf("the child finished the load (%d records) before the kill; nothing was tested", n)
	}
	h.produce(all[3*roots:]...)
	h.run()
	h.checkExactlyOnce(h.logTopic(), roots, versions)
	h.checkLatest(roots, versions)
}

// TestComplianceChild is the child of TestKill9MidLoad: it runs the sink until killed.
func TestComplianceChild(t *testing.T) {
	if os.Getenv(envChild) == "" {
		t.Skip("only runs as the child of TestKill9MidLoad")
	}
	data, err := os.ReadFile(os.Getenv(envChildConfig))
	if err != nil {
		t.Fatal(err)
	}
	var cfg config.Config
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	// A short session lets the group evict the killed member quickly.
	s, err := compliance.New(&cfg, compliance.WithMaxPollRecords(3), compliance.WithKafkaOpts(kgo.SessionTimeout(6*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fmt.Println("child running")
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
}
