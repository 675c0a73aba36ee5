package embedkafka_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/walhook/walhook/internal/kafkatest"
)

// kcat runs kcat with args and stdin, failing the test on error. Without kcat
// the test skips locally and fails in CI, which installs it.
func kcat(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kcat not found in PATH; CI must install it (apt-get install -y kcat)")
		}
		t.Skip("kcat not installed (apt-get install -y kcat); skipping the independent-client check")
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kcat %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestKcatAgainstEmbeddedBroker(t *testing.T) {
	t.Parallel()
	env := kafkatest.Start(t, kafkatest.Embedded())
	addr := env.Brokers[0]
	kgoTopic := kafkatest.CreateTopic(t, env, "kgo", 1, nil)

	if md := kcat(t, "", "-b", addr, "-L"); !strings.Contains(md, "1 brokers:") || !strings.Contains(md, kgoTopic) {
		t.Fatalf("kcat -L misses the broker or topic %s:\n%s", kgoTopic, md)
	}

	// kcat produces to a topic nobody created: auto-creation on request.
	kcatTopic := kafkatest.TopicName(t, "kcat")
	kcat(t, "k1:v1\nk2:v2\n", "-b", addr, "-P", "-t", kcatTopic, "-K", ":")
	got := kafkatest.ConsumeAll(t, env, kcatTopic, 2, wait)
	if vs := values(got); len(vs) != 2 {
		t.Fatalf("kgo read %v from the kcat topic, want v1 and v2", vs)
	}

	produce(t, kafkatest.Client(t, env), kgoTopic, "a", "from-kgo-1", "b", "from-kgo-2")
	out := kcat(t, "", "-b", addr, "-C", "-t", kgoTopic, "-o", "beginning", "-e", "-q", "-f", "%k=%s\n")
	if out != "a=from-kgo-1\nb=from-kgo-2\n" {
		t.Fatalf("kcat -C read %q, want both kgo records", out)
	}
}
