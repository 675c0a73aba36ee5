package kafkaconn

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/internal/kafkatest"
)

func TestEnsureTopics(t *testing.T) {
	env := kafkatest.Start(t)
	adm := kadm.NewClient(kafkatest.Client(t, env))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := kafkatest.TopicName(t, "state")
	spec := TopicSpec{Name: name, Partitions: 1, ReplicationFactor: -1, Configs: map[string]string{"cleanup.policy": "compact"}}
	if err := EnsureTopics(ctx, adm, []TopicSpec{spec}); err != nil {
		t.Fatal(err)
	}
	if err := EnsureTopics(ctx, adm, []TopicSpec{spec}); err != nil {
		t.Fatalf("second run: %v", err)
	}
	spec.Configs = map[string]string{"cleanup.policy": "delete"}
	err := EnsureTopics(ctx, adm, []TopicSpec{spec})
	if err == nil || !strings.Contains(err.Error(), "cleanup.policy") || !strings.Contains(err.Error(), name) {
		t.Fatalf("wrong policy: %v", err)
	}
}

// Once EnsureTopics returned, every partition of the topics it created answers offset requests:
// Apache Kafka acknowledges CreateTopics before its brokers know the topic, and a stage that
// restores or consumes right away saw it missing.
func TestEnsuredTopicsAreUsableAtOnce(t *testing.T) {
	env := kafkatest.Start(t)
	adm := kadm.NewClient(kafkatest.Client(t, env))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var specs []TopicSpec
	var names []string
	for _, base := range []string{"a", "b", "c"} {
		name := kafkatest.TopicName(t, base)
		names = append(names, name)
		specs = append(specs, TopicSpec{Name: name, Partitions: 4, ReplicationFactor: -1})
	}
	if _, err := adm.ListTopics(ctx, names...); err != nil { // caches them as unknown
		t.Fatal(err)
	}
	if err := EnsureTopics(ctx, adm, specs); err != nil {
		t.Fatal(err)
	}
	offs, err := adm.ListEndOffsets(ctx, names...)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		for p := int32(0); p < 4; p++ {
			o, ok := offs.Lookup(name, p)
			if !ok || o.Err != nil {
				t.Fatalf("%s[%d] right after EnsureTopics: listed %v, %v", name, p, ok, o.Err)
			}
		}
	}
}

func TestPingUnreachable(t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = Ping(ctx, cl, []string{"127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") || !strings.Contains(err.Error(), "WALHOOK_BROKERS") {
		t.Fatalf("unreachable: %v", err)
	}
}
