package kafkatest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/walhook/walhook/internal/embedkafka"
)

// Environment variables that point the suite at real servers.
const (
	EnvBrokers     = "WALHOOK_TEST_BROKERS"      // comma-separated host:port
	EnvRegistryURL = "WALHOOK_TEST_REGISTRY_URL" // e.g. http://localhost:8081
)

// Env is the cluster and registry a test runs against.
type Env struct {
	Brokers     []string
	RegistryURL string
	// Cluster is the embedded kfake cluster for fault injection; nil on a
	// real Kafka. Use RequireCluster rather than reading it directly.
	Cluster *kfake.Cluster
	// Stack is the embedded stack; nil on a real Kafka.
	Stack *embedkafka.Stack
}

// Real reports whether the tests run against WALHOOK_TEST_BROKERS.
func (e *Env) Real() bool { return e.Stack == nil }

// RequireCluster returns the kfake cluster, skipping the test on a real Kafka
// where faults cannot be injected.
func (e *Env) RequireCluster(t testing.TB) *kfake.Cluster {
	t.Helper()
	if e.Cluster == nil {
		t.Skipf("needs the embedded kfake cluster for fault injection; unset %s to run it", EnvBrokers)
	}
	return e.Cluster
}

// Option configures Start.
type Option func(*config)

type config struct {
	opts     embedkafka.Options
	embedded bool
}

// WithOptions sets the embedkafka options, replacing the defaults (free
// ports, in memory, test logger). Ignored on a real Kafka.
func WithOptions(o embedkafka.Options) Option { return func(c *config) { c.opts = o } }

// WithPartitions sets the partition count of auto-created topics. Ignored on
// a real Kafka.
func WithPartitions(n int32) Option { return func(c *config) { c.opts.Partitions = n } }

// WithDataDir persists the embedded broker to dir. Ignored on a real Kafka.
func WithDataDir(dir string) Option { return func(c *config) { c.opts.DataDir = dir } }

// Embedded forces the embedded stack even when WALHOOK_TEST_BROKERS is set,
// for tests about the embedded stack itself (persistence, kcat).
func Embedded() Option { return func(c *config) { c.embedded = true } }

// Start returns the environment for t: WALHOOK_TEST_BROKERS when set, else the binary's shared
// Apache Kafka cluster when WALHOOK_TEST_KAFKA says apache or apache3, else an embedded stack
// closed by t.Cleanup.
func Start(t testing.TB, opts ...Option) *Env {
	t.Helper()
	var c config
	for _, o := range opts {
		o(&c)
	}
	if brokers := os.Getenv(EnvBrokers); brokers != "" && !c.embedded {
		return realEnv(t, brokers)
	}
	if mode := os.Getenv(EnvKafka); mode != "" && mode != "kfake" && !c.embedded {
		return apacheEnv(t, mode)
	}
	if c.opts.Logger == nil {
		c.opts.Logger = testLogger(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := embedkafka.Start(ctx, c.opts)
	if err != nil {
		t.Fatalf("kafkatest: start embedded kafka: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("kafkatest: close embedded kafka: %v", err)
		}
	})
	return &Env{Brokers: s.Brokers(), RegistryURL: s.RegistryURL(), Cluster: s.Cluster(), Stack: s}
}

func realEnv(t testing.TB, brokers string) *Env {
	e := &Env{RegistryURL: os.Getenv(EnvRegistryURL)}
	for _, b := range strings.Split(brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			e.Brokers = append(e.Brokers, b)
		}
	}
	if e.RegistryURL == "" {
		// No real registry given: an in-process one still lets schema
		// tests run against the real brokers.
		reg := srfake.New()
		t.Cleanup(reg.Close)
		e.RegistryURL = reg.URL()
	}
	return e
}
