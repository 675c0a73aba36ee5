package embedkafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap"
)

// CleanerBackoff is how often the embedded broker compacts topics with
// cleanup.policy=compact (kfake's log.cleaner.backoff.ms) unless
// Options.CleanerBackoff says otherwise. kfake's own default is one hour, far
// too slow for dev and tests.
const CleanerBackoff = time.Second

// NoCompaction as Options.CleanerBackoff keeps kfake from ever compacting.
const NoCompaction time.Duration = -1

// neverMs is the log.cleaner.backoff.ms of NoCompaction: about 30 years, still
// a positive time.Duration when kfake multiplies it by a millisecond.
const neverMs = int64(1e12)

// Options configures Start. The zero value is an in-memory broker on a free
// port with a registry on another free port.
type Options struct {
	// DataDir is where kfake persists its state and where the registry
	// journal lives; "" keeps everything in memory. Dev mode uses
	// ./.walhook/kafka. The directory is created if needed.
	DataDir string
	// Port is the broker's TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// RegistryPort is the schema registry's TCP port on 127.0.0.1; 0 picks
	// a free one, -1 runs no registry.
	RegistryPort int
	// Partitions is the partition count of auto-created topics and of
	// CreateTopics requests asking for -1 partitions; 0 means 6.
	Partitions int32
	// NumBrokers is how many brokers the cluster runs; 0 means 1. With more
	// than one, Port fixes only the first broker's port.
	NumBrokers int
	// CleanerBackoff is how often compacted topics are compacted; 0 means
	// CleanerBackoff, NoCompaction (any negative value) never. kfake's
	// compaction ignores open transactions (see the package doc): a run that
	// kills transactional writers of compacted topics needs NoCompaction.
	CleanerBackoff time.Duration
	// ExpireSilentMembers, when positive, removes a member of a Stable
	// classic consumer group that sent no group request (JoinGroup,
	// SyncGroup, Heartbeat, OffsetCommit, TxnOffsetCommit) for that long:
	// kfake sometimes never expires a member killed inside JoinGroup (see the
	// package doc). Keep it well above the clients' session timeouts; live
	// members heartbeat several times per session. 0 leaves expiry to kfake.
	ExpireSilentMembers time.Duration
	// Logger receives kfake's warnings and errors and the registry's
	// journal messages; nil discards them.
	Logger *zap.Logger
	// RegistryOnly runs the schema registry without the broker, for a demo
	// on a real Kafka (`walhook dev --kafka apache`). Brokers and Cluster
	// are then empty.
	RegistryOnly bool
}

func (o Options) withDefaults() Options {
	if o.Partitions == 0 {
		o.Partitions = 6
	}
	if o.NumBrokers == 0 {
		o.NumBrokers = 1
	}
	if o.CleanerBackoff == 0 {
		o.CleanerBackoff = CleanerBackoff
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o
}

func (o Options) validate() error {
	var errs []error
	if o.Port < 0 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("embedkafka: Port %d is out of range: use 0 for a free port or 1-65535", o.Port))
	}
	if o.RegistryPort < -1 || o.RegistryPort > 65535 {
		errs = append(errs, fmt.Errorf("embedkafka: RegistryPort %d is out of range: use -1 to disable, 0 for a free port or 1-65535", o.RegistryPort))
	}
	if o.Partitions < 0 {
		errs = append(errs, fmt.Errorf("embedkafka: Partitions %d is negative: use 0 for the default of 6 or a positive count", o.Partitions))
	}
	if o.NumBrokers < 0 {
		errs = append(errs, fmt.Errorf("embedkafka: NumBrokers %d is negative: use 0 for one broker or a positive count", o.NumBrokers))
	}
	if o.ExpireSilentMembers < 0 {
		errs = append(errs, fmt.Errorf("embedkafka: ExpireSilentMembers %s is negative: use 0 to leave expiry to kfake or a duration above the session timeouts", o.ExpireSilentMembers))
	}
	return errors.Join(errs...)
}

// Stack is a running embedded broker and registry. Its methods are safe for
// concurrent use.
type Stack struct {
	cluster  *kfake.Cluster
	brokers  []string
	registry *registry    // nil when disabled
	watch    *memberWatch // nil without Options.ExpireSilentMembers

	closeOnce sync.Once
	closeErr  error
}

// Start starts the broker, then the registry. ctx bounds startup only; the
// stack runs until Close. On error nothing is left running.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("embedkafka: start canceled: %w", err)
	}
	if opts.RegistryOnly {
		if opts.RegistryPort < 0 {
			return nil, errors.New("embedkafka: RegistryOnly with RegistryPort -1 would run nothing: use RegistryPort 0 for a free port")
		}
		reg, err := startRegistry(ctx, opts)
		if err != nil {
			return nil, err
		}
		return &Stack{registry: reg}, nil
	}
	cluster, err := kfake.NewCluster(clusterOpts(opts)...)
	if err != nil {
		fix := "pick a free Port, or 0 for any"
		if opts.DataDir != "" {
			fix += "; if the data dir is corrupt, move " + opts.DataDir + " aside"
		}
		return nil, fmt.Errorf("embedkafka: start broker on 127.0.0.1:%d: %w; %s", opts.Port, err, fix)
	}
	s := &Stack{cluster: cluster, brokers: cluster.ListenAddrs()}
	if opts.ExpireSilentMembers > 0 {
		if s.watch, err = startMemberWatch(cluster, s.brokers, opts.ExpireSilentMembers, opts.Logger.Named("members")); err != nil {
			cluster.Close()
			return nil, fmt.Errorf("embedkafka: member expiry client: %w", err)
		}
	}
	if opts.RegistryPort >= 0 {
		s.registry, err = startRegistry(ctx, opts)
		if err != nil {
			if s.watch != nil {
				s.watch.stop()
			}
			cluster.Close()
			return nil, err
		}
	}
	opts.Logger.Debug("embedded kafka started",
		zap.Strings("brokers", s.brokers), zap.String("registry", s.RegistryURL()),
		zap.String("data_dir", opts.DataDir))
	return s, nil
}

func clusterOpts(opts Options) []kfake.Opt {
	ports := make([]int, opts.NumBrokers)
	ports[0] = opts.Port
	kopts := []kfake.Opt{
		kfake.Ports(ports...),
		kfake.WithLogger(zapLogger{opts.Logger.Named("kfake")}),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(int(opts.Partitions)),
		kfake.ClusterID("walhook-embedded"),
		kfake.BrokerConfigs(map[string]string{
			"log.cleaner.backoff.ms": strconv.FormatInt(cleanerBackoffMs(opts.CleanerBackoff), 10),
		}),
	}
	if opts.DataDir != "" {
		kopts = append(kopts, kfake.DataDir(opts.DataDir))
	}
	return kopts
}

// cleanerBackoffMs is kfake's log.cleaner.backoff.ms for d (after withDefaults).
func cleanerBackoffMs(d time.Duration) int64 {
	if d < 0 {
		return neverMs
	}
	return max(d.Milliseconds(), 1)
}

// Brokers returns the seed addresses, "127.0.0.1:PORT" per broker.
func (s *Stack) Brokers() []string { return append([]string(nil), s.brokers...) }

// RegistryURL returns "http://127.0.0.1:PORT", or "" when the registry is
// disabled.
func (s *Stack) RegistryURL() string {
	if s.registry == nil {
		return ""
	}
	return s.registry.url
}

// Cluster returns the kfake cluster for fault injection (ControlKey,
// Compact, ...). Tests reach it through kafkatest.Env.Cluster, which is nil
// on a real Kafka.
func (s *Stack) Cluster() *kfake.Cluster { return s.cluster }

// Close stops the member expiry (waiting for its goroutine), the registry
// HTTP server (waiting for its goroutine), closes the registry journal, then
// closes the cluster, which persists its state when DataDir is set. It is
// idempotent and returns the first call's error.
func (s *Stack) Close() error {
	s.closeOnce.Do(func() {
		if s.watch != nil {
			s.watch.stop()
		}
		if s.registry != nil {
			s.closeErr = s.registry.close()
		}
		if s.cluster != nil {
			s.cluster.Close()
		}
	})
	return s.closeErr
}
