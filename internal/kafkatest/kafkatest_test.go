package kafkatest_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/internal/kafkatest"
)

func TestRealKafkaEnv(t *testing.T) {
	// A "real" Kafka here is an embedded one reached only through the
	// environment variable, the way CI reaches Redpanda.
	embedded := kafkatest.Start(t, kafkatest.Embedded())
	t.Setenv(kafkatest.EnvBrokers, strings.Join(embedded.Brokers, ","))
	t.Setenv(kafkatest.EnvRegistryURL, "")

	env := kafkatest.Start(t)
	if !env.Real() || env.Cluster != nil || env.Stack != nil {
		t.Fatalf("Start with %s set returned an embedded env: %+v", kafkatest.EnvBrokers, env)
	}
	if env.RegistryURL == "" {
		t.Fatal("no registry URL on real Kafka without WALHOOK_TEST_REGISTRY_URL; want an in-process one")
	}
	topic := kafkatest.TopicName(t, "real")
	cl := kafkatest.Client(t, env, kgo.AllowAutoTopicCreation(), kgo.DefaultProduceTopic(topic))
	if err := cl.ProduceSync(t.Context(), kgo.StringRecord("v")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if got := kafkatest.ConsumeAll(t, env, topic, 1, 10*time.Second); string(got[0].Value) != "v" {
		t.Fatalf("got %q, want v", got[0].Value)
	}
	skipped := false
	t.Run("fault injection", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		env.RequireCluster(t)
	})
	if !skipped {
		t.Fatal("RequireCluster did not skip on real Kafka")
	}
}

func TestNamesAreUniqueAndLegal(t *testing.T) {
	t.Parallel()
	legal := regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
	seen := map[string]bool{}
	for range 100 {
		n := kafkatest.TopicName(t, "a/b c")
		if !legal.MatchString(n) || seen[n] {
			t.Fatalf("topic name %q is illegal or repeated", n)
		}
		seen[n] = true
	}
	if g := kafkatest.GroupName(t, "g"); !strings.HasPrefix(g, "g.") {
		t.Fatalf("group name %q does not start with its base", g)
	}
}

func TestEventuallyRetriesUntilNil(t *testing.T) {
	t.Parallel()
	calls := 0
	kafkatest.Eventually(t, 5*time.Second, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if calls != 3 {
		t.Fatalf("fn called %d times, want 3", calls)
	}
}
