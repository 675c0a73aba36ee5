package kafkatest

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walhook/walhook/internal/apachekafka"
)

// EnvKafka selects the broker Start gives tests when WALHOOK_TEST_BROKERS is unset: "kfake" (the
// default, in process), "apache" (one Apache Kafka node started by internal/apachekafka and
// shared by every test of the test binary) or "apache3" (a shared three-node cluster).
const EnvKafka = "WALHOOK_TEST_KAFKA"

// sharedApache is the Apache Kafka cluster of this test binary: started by the first test that
// asks, never closed by a test. It dies with the process (apachekafka's Pdeathsig), and the next
// start removes its directory. Package state is the point here: one JVM startup per binary, not
// per test.
var sharedApache struct {
	once    sync.Once
	cluster *apachekafka.Cluster
	err     error
}

func apacheEnv(t testing.TB, mode string) *Env {
	t.Helper()
	nodes := 1
	switch mode {
	case "apache":
	case "apache3":
		nodes = 3
	default:
		t.Fatalf("kafkatest: %s=%q: use kfake, apache or apache3", EnvKafka, mode)
	}
	sharedApache.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a first run resolves the jars
		defer cancel()
		sharedApache.cluster, sharedApache.err = apachekafka.Start(ctx, apachekafka.Options{Nodes: nodes})
	})
	if sharedApache.err != nil {
		t.Fatalf("kafkatest: %s=%s: %v", EnvKafka, mode, sharedApache.err)
	}
	return realEnv(t, strings.Join(sharedApache.cluster.Brokers(), ","))
}

// StartApache starts an Apache Kafka cluster of its own for t (for tests that kill or pause
// brokers), closed by t.Cleanup. It skips when Java or Maven is missing, except in CI (CI=true).
func StartApache(t testing.TB, opts apachekafka.Options) *apachekafka.Cluster {
	t.Helper()
	if opts.Log == nil {
		opts.Log = func(format string, args ...any) {
			t.Logf("%s "+format, append([]any{time.Now().Format("15:04:05.000")}, args...)...)
		}
	}
	c, err := apachekafka.Start(context.Background(), opts)
	if err != nil {
		if os.Getenv("CI") != "true" && apachekafka.IsMissingTool(err) {
			t.Skipf("kafkatest: %v", err)
		}
		t.Fatalf("kafkatest: start Apache Kafka: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("kafkatest: close Apache Kafka: %v", err)
		}
	})
	return c
}

// EnvOf is the Env of a cluster from StartApache, with an in-process schema registry.
func EnvOf(t testing.TB, c *apachekafka.Cluster) *Env {
	t.Helper()
	return realEnv(t, strings.Join(c.Brokers(), ","))
}
