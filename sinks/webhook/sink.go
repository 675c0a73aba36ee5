package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/chunked"
	"github.com/walhook/walhook/internal/kafkaconn"
)

// commitInterval is how often the partitions' watermarks are committed.
const commitInterval = time.Second

// Sink is the webhook sink. Build it with New and run it with Run, once.
type Sink struct {
	cfg      *config.Config
	log      *zap.Logger
	registry avro.Registry
	now      func() time.Time
	rt       http.RoundTripper
	tlsConf  *tls.Config
	dialer   *net.Dialer
	kopts    []kgo.Opt
	version  string
	tracer   trace.Tracer // nil: tracing disabled (trace.go)

	idx    *index
	health *healthWriter
	guard  *guard
	sender *sender
	eps    *endpoints
	m      *metrics

	// Set by Run before any goroutine starts; read-only afterwards.
	ctx  context.Context
	stop context.CancelCauseFunc
	cl   *kgo.Client
	pool *db

	workers sync.WaitGroup // endpoint workers
	ran     atomic.Bool

	partsMu sync.Mutex
	parts   map[tp]*partition // guarded by partsMu
	partsWG sync.WaitGroup    // partition goroutines

	// commitMu is held by commitLoop from reading the watermarks until their commit is done, and
	// by the rebalance callbacks while they take their partitions: a periodic commit read before
	// a revoke can then never land after the revoke's final commit (and after the partition's
	// next owner moved on), rewinding the group's offset to a stale watermark.
	commitMu sync.Mutex

	// asm reassembles chunk groups (records above kafka.max_record_bytes) for pollLoop, holding
	// back a partition's records behind an unfinished group so that no watermark passes a
	// chunk still needed; asmMu guards it against the rebalance callbacks' Forget.
	asmMu sync.Mutex
	asm   *chunked.Assembler
	// produceMu keeps the chunks of one record together: every produceThen holds it.
	produceMu  sync.Mutex
	syncWarned atomic.Int64 // unix nanos of the last awaitSubscriptions warning
}

type tp struct {
	topic string
	id    int32
}

// Option configures New.
type Option func(*Sink)

// WithLogger sets the logger. Default: a no-op logger.
func WithLogger(l *zap.Logger) Option { return func(s *Sink) { s.log = l } }

// WithRegisterer registers the sink's metrics. Default: a private registry (metrics not exposed).
func WithRegisterer(r prometheus.Registerer) Option {
	return func(s *Sink) { s.m = newMetrics(r, s) }
}

// WithRegistry sets the schema registry that resolves snapshot records. Default: the Confluent
// registry of schema_registry.url, or the topic registry kafka.topic_prefix + "schemas".
func WithRegistry(r avro.Registry) Option { return func(s *Sink) { s.registry = r } }

// WithRoundTripper replaces the guarded HTTP transport. The SSRF check and connect timeout
// live in that transport: tests only.
func WithRoundTripper(rt http.RoundTripper) Option { return func(s *Sink) { s.rt = rt } }

// WithTLSConfig sets the TLS client config of requests (e.g. a test CA). Default: system roots,
// TLS 1.2 or later.
func WithTLSConfig(c *tls.Config) Option { return func(s *Sink) { s.tlsConf = c } }

// WithDialer sets the base dialer; its Control is replaced by the SSRF guard. Default: a
// net.Dialer with deliver.connect_timeout.
func WithDialer(d *net.Dialer) Option { return func(s *Sink) { s.dialer = d } }

// WithClock sets the clock of webhook-timestamp, envelope sent_at and attempt times. Default
// time.Now.
func WithClock(now func() time.Time) Option { return func(s *Sink) { s.now = now } }

// WithVersion sets the version in the User-Agent "walhook/<version>". Default "dev".
func WithVersion(v string) Option { return func(s *Sink) { s.version = v } }

// WithKafkaOpts appends franz-go options to the group client (tests: fetch waits, hooks).
func WithKafkaOpts(opts ...kgo.Opt) Option {
	return func(s *Sink) { s.kopts = append(s.kopts, opts...) }
}

// New checks the configuration and builds a sink. cfg is copied; its deliver section gets its
// defaults.
func New(cfg *config.Config, opts ...Option) (*Sink, error) {
	c := *cfg
	c.Deliver.SetDefaults()
	if err := c.ValidateDeliver(); err != nil {
		return nil, err
	}
	if c.Postgres.URL == "" {
		return nil, errors.New("webhook: postgres.url is empty; the sink reads subscriptions from the hook schema: set postgres.url or WALHOOK_PG_URL")
	}
	if len(c.Model.Roots) == 0 {
		return nil, errors.New("webhook: the model has no roots, so there is no snapshot topic to consume; declare model.roots")
	}
	s := &Sink{cfg: &c, log: zap.NewNop(), now: time.Now, version: "dev", idx: newIndex(), parts: map[tp]*partition{},
		asm: chunked.NewAssembler(true)}
	s.eps = &endpoints{s: s, m: map[string]*endpoint{}}
	for _, o := range opts {
		o(s)
	}
	if s.m == nil {
		s.m = newMetrics(prometheus.NewRegistry(), s)
	}
	g, err := newGuard(c.Deliver.AllowLoopback, c.Deliver.AllowCIDRs)
	if err != nil {
		return nil, err
	}
	s.guard = g
	hc := newHTTPClient(g, c.Deliver.ConnectTimeout, c.Deliver.EndpointConcurrency, s.tlsConf, s.dialer)
	if s.rt != nil {
		hc.Transport = s.rt
	}
	s.sender = &sender{http: hc, guard: g, userAgent: "walhook/" + s.version, maxPayload: c.Deliver.MaxPayloadBytes,
		timeout: c.Deliver.RequestTimeout, now: s.now}
	return s, nil
}

// Topics are the topics the sink creates: retry tiers, dead letters, attempts and requests.
func Topics(cfg *config.Config) []kafkaconn.TopicSpec {
	d := cfg.Deliver
	d.SetDefaults()
	k := cfg.Kafka
	spec := func(name string) kafkaconn.TopicSpec {
		return kafkaconn.TopicSpec{Name: name, Partitions: k.Partitions, ReplicationFactor: k.ReplicationFactor,
			Configs: map[string]string{"cleanup.policy": "delete"}}
	}
	var out []kafkaconn.TopicSpec
	for _, t := range d.RetryTiers {
		out = append(out, spec(k.WebhookRetryTopic(t)))
	}
	return kafkaconn.WithRecordLimits(k, append(out, spec(k.WebhookDeadLetterTopic()), spec(k.WebhookAttemptTopic()), spec(k.WebhookRequestTopic()),
		spec(cfg.PoisonTopic(config.StageDeliver))))
}

// consumedTopics are the snapshot topics of every root, the retry tiers and the request topic.
func (s *Sink) consumedTopics() []string {
	var out []string
	for _, r := range s.cfg.Model.Roots {
		out = append(out, s.cfg.Kafka.SnapshotTopic(r))
	}
	for _, t := range s.cfg.Deliver.RetryTiers {
		out = append(out, s.cfg.Kafka.WebhookRetryTopic(t))
	}
	return append(out, s.cfg.Kafka.WebhookRequestTopic())
}

// Run consumes and delivers until ctx is done or a fatal error (PostgreSQL unreachable at start,
// a failed produce). It returns after every goroutine it started has stopped, having committed
// the offsets whose deliveries are finished.
func (s *Sink) Run(ctx context.Context) (err error) {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("webhook: Run called twice")
	}
	parent := ctx
	defer func() {
		if parent.Err() != nil && errors.Is(err, context.Canceled) {
			err = nil // stopped by the caller, during start-up
		}
	}()
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	s.ctx, s.stop = ctx, stop

	s.pool = &db{url: s.cfg.Postgres.URL}
	defer s.pool.Close()
	subs, err := loadAll(ctx, s.pool)
	if err != nil {
		return err
	}
	s.idx.replace(subs)

	if err := s.connectKafka(ctx); err != nil {
		return err
	}
	defer s.cl.Close()

	var bg sync.WaitGroup
	s.health = newHealthWriter(s.cfg.Postgres.URL, s.log)
	hctx, hstop := context.WithCancel(context.WithoutCancel(ctx))
	var hwg sync.WaitGroup
	hwg.Go(func() { s.health.run(hctx) })
	defer func() { hstop(); hwg.Wait() }() // after the workers: their last marks are written
	l := &listener{url: s.cfg.Postgres.URL, db: s.pool, idx: s.idx, interval: s.cfg.Deliver.ReloadInterval,
		sync: s.cfg.Deliver.SubscriptionSync, log: s.log}
	bg.Go(func() { _ = l.run(ctx) })
	bg.Go(func() { s.commitLoop(ctx) })
	bg.Go(func() { s.eps.sweepLoop(ctx, s.cfg.Deliver.EndpointIdleTimeout) })
	bg.Go(func() { s.forgetColdLoop(ctx) })
	s.log.Info("webhook sink started", zap.Strings("topics", s.consumedTopics()), zap.String("group", s.cfg.WebhookGroup()),
		zap.Int("subscriptions", len(subs)))

	s.pollLoop(ctx)

	stop(nil)
	s.workers.Wait()
	s.stopPartitions(s.takeAll(), true, 10*time.Second)
	s.partsWG.Wait()
	bg.Wait()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}

func (s *Sink) connectKafka(ctx context.Context) error {
	opts, err := kafkaconn.Opts(s.cfg.Kafka)
	if err != nil {
		return err
	}
	admin, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("webhook: kafka client: %w", err)
	}
	defer admin.Close()
	if err := kafkaconn.EnsureTopics(ctx, kadm.NewClient(admin), Topics(s.cfg)); err != nil {
		return err
	}
	opts = append(opts,
		kgo.ConsumerGroup(s.cfg.WebhookGroup()),
		kgo.ConsumeTopics(s.consumedTopics()...),
		// Snapshots are written in bubble-up's Kafka transactions: an aborted one must never
		// reach a receiver.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.OnPartitionsRevoked(s.revoked),
		kgo.OnPartitionsLost(s.lost),
	)
	// A SIGKILLed member never leaves: the group waits for its session to expire before it
	// hands its partitions on, and removes a member that was killed inside JoinGroup only at
	// the rebalance timeout. franz-go's 45 s and 60 s (which every new join restarts on
	// kfake) kept a group rebalancing for minutes under repeated kills. Both are
	// deliver.session_timeout; the sink rejoins within it because pollLoop never blocks
	// and revoked is bounded by revokeBudget.
	opts = append(opts, kafkaconn.GroupOpts(s.cfg.Kafka, s.cfg.Deliver.SessionTimeout)...)
	if s.cl, err = kgo.NewClient(append(opts, s.kopts...)...); err != nil {
		return fmt.Errorf("webhook: kafka client: %w", err)
	}
	if s.registry == nil {
		if s.registry, err = s.defaultRegistry(); err != nil {
			s.cl.Close()
			return err
		}
	}
	return nil
}

func (s *Sink) defaultRegistry() (avro.Registry, error) {
	return kafkaconn.AvroRegistry(s.cfg, s.cl)
}

// pollLoop polls and hands each partition's records to its goroutine, until ctx is done.
//
// It must never wait between PollRecords and AllowRebalance: BlockRebalanceOnPoll holds the
// group's rebalance (and our heartbeat-driven rejoin) until AllowRebalance, so a poll loop
// blocked on a backed-up partition keeps the whole group from rebalancing past the rebalance
// timeout. Records are therefore queued in the partition's inbox without blocking; a partition
// with deliver.max_pending unfinished deliveries pauses its own fetching (advance), so the
// inbox holds at most what was fetched before the pause took effect.
func (s *Sink) pollLoop(ctx context.Context) {
	for {
		// While a chunk group is unfinished the poll wakes every second, so that a group
		// nothing finishes is given up (Abandon) even when nothing else arrives.
		s.asmMu.Lock()
		pending := s.asm.Pending()
		s.asmMu.Unlock()
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if pending {
			pctx, cancel = context.WithTimeout(ctx, time.Second)
		}
		fs := s.cl.PollRecords(pctx, 4096)
		cancel()
		if ctx.Err() != nil || fs.IsClientClosed() {
			s.cl.AllowRebalance()
			return
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				s.log.Warn("webhook: fetch error", zap.String("topic", topic), zap.Int32("partition", p), zap.Error(err))
			}
		})
		s.asmMu.Lock()
		s.asm.Fetches(fs)
		fs = append(fs, s.asm.Abandon(chunked.IdleTimeout)...) // a group nothing finishes does not decode
		s.asmMu.Unlock()
		fs.EachPartition(func(f kgo.FetchTopicPartition) {
			if len(f.Records) == 0 {
				return
			}
			s.partition(f.Topic, f.Partition).give(f.Records)
		})
		s.cl.AllowRebalance()
	}
}

func (s *Sink) partition(topic string, id int32) *partition {
	s.partsMu.Lock()
	defer s.partsMu.Unlock()
	k := tp{topic, id}
	if p := s.parts[k]; p != nil {
		return p
	}
	p := newPartition(s, topic, id)
	pctx, cancel := context.WithCancel(s.ctx)
	p.stop = cancel
	s.parts[k] = p
	s.partsWG.Go(func() { p.run(pctx) })
	return p
}

func (s *Sink) take(assigned map[string][]int32) []*partition {
	s.partsMu.Lock()
	defer s.partsMu.Unlock()
	var out []*partition
	for topic, ids := range assigned {
		for _, id := range ids {
			if p := s.parts[tp{topic, id}]; p != nil {
				out = append(out, p)
				delete(s.parts, tp{topic, id})
			}
		}
	}
	return out
}

func (s *Sink) takeAll() []*partition {
	s.partsMu.Lock()
	defer s.partsMu.Unlock()
	out := make([]*partition, 0, len(s.parts))
	for k, p := range s.parts {
		out = append(out, p)
		delete(s.parts, k)
	}
	return out
}

// stopPartitions stops the partitions' goroutines and, when commit is set, commits their final
// watermarks. Tasks still in flight finish into closed partitions and are ignored: they are
// redone by the partitions' next owner.
//
// It waits for the goroutines at most wait, then commits anyway: a partition's committable only
// ever covers finished tasks, so committing it while its goroutine is still winding down (stuck
// in a produce, say) is safe, and a rebalance callback must not outlast the rebalance timeout.
// A goroutine not stopped yet is still waited for by Run, through partsWG.
func (s *Sink) stopPartitions(ps []*partition, commit bool, wait time.Duration) {
	for _, p := range ps {
		p.stop()
	}
	if !waitStopped(ps, wait) {
		s.log.Warn("webhook: partition goroutines still stopping at the end of their budget; committing their watermarks anyway",
			zap.Duration("budget", wait))
	}
	if !commit {
		return
	}
	offsets := map[string]map[int32]kgo.EpochOffset{}
	for _, p := range ps {
		if o := p.committable.Load(); o >= 0 {
			if offsets[p.topic] == nil {
				offsets[p.topic] = map[int32]kgo.EpochOffset{}
			}
			offsets[p.topic][p.id] = kgo.EpochOffset{Epoch: -1, Offset: o}
		}
	}
	if len(offsets) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	s.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			s.log.Warn("webhook: final offset commit failed; deliveries since the last commit will be repeated", zap.Error(err))
			return
		}
		commitErrors(resp, func(k tp, err error) {
			s.log.Warn("webhook: final offset commit of a partition failed; deliveries since its last commit will be repeated",
				zap.String("topic", k.topic), zap.Int32("partition", k.id), zap.Error(err))
		})
	})
}

// revokeBudget bounds each half of a rebalance callback (stopping the partitions, committing
// their watermarks), so that the member rejoins within the rebalance timeout
// (deliver.session_timeout) and is not expelled for being slow.
func (s *Sink) revokeBudget() time.Duration { return s.cfg.Deliver.SessionTimeout / 3 }

// waitStopped waits until every partition's goroutine has returned, at most wait; it reports
// whether they all did.
func waitStopped(ps []*partition, wait time.Duration) bool {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for _, p := range ps {
		select {
		case <-p.done:
		case <-deadline.C:
			return false
		}
	}
	return true
}

func (s *Sink) revoked(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	s.forgetChunks(lost)
	s.stopPartitions(s.takeForRebalance(lost), true, s.revokeBudget())
}

func (s *Sink) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	s.forgetChunks(lost)
	s.stopPartitions(s.takeForRebalance(lost), false, s.revokeBudget())
}

// forgetChunks drops the unfinished chunk groups of partitions given up: their next owner
// reads them again from the committed offsets, which never pass them.
func (s *Sink) forgetChunks(parts map[string][]int32) {
	s.asmMu.Lock()
	defer s.asmMu.Unlock()
	for topic, ids := range parts {
		for _, id := range ids {
			s.asm.Forget(topic, id)
		}
	}
}

// takeForRebalance takes the partitions once no periodic commit of their watermarks is in
// flight (see commitMu).
func (s *Sink) takeForRebalance(assigned map[string][]int32) []*partition {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	return s.take(assigned)
}

// commitErrors calls fail for each partition of a commit response whose error code is set. A
// commit that lands during a rebalance is answered REBALANCE_IN_PROGRESS or ILLEGAL_GENERATION
// per partition, with no request error: CommitOffsetsSync's err alone does not say it was stored.
func commitErrors(resp *kmsg.OffsetCommitResponse, fail func(k tp, err error)) {
	if resp == nil {
		return
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				fail(tp{t.Topic, p.Partition}, err)
			}
		}
	}
}

// commitLoop commits the watermarks the partitions published, every commitInterval.
//
// A watermark is committed again only when it changed since its last successful commit: last
// holds only watermarks the broker stored (a partition a commit failed for, as a whole or by its
// error code, is forgotten and retried next interval) and only for partitions still assigned (a
// partition revoked and assigned again commits its first watermark even if it equals an old one).
func (s *Sink) commitLoop(ctx context.Context) {
	last := map[tp]int64{}
	t := time.NewTicker(commitInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.commitOnce(ctx, last)
	}
}

func (s *Sink) commitOnce(ctx context.Context, last map[tp]int64) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	offsets := map[string]map[int32]kgo.EpochOffset{}
	s.partsMu.Lock()
	for k := range last {
		if s.parts[k] == nil {
			delete(last, k)
		}
	}
	for k, p := range s.parts {
		if o := p.committable.Load(); o >= 0 && o != last[k] {
			if offsets[k.topic] == nil {
				offsets[k.topic] = map[int32]kgo.EpochOffset{}
			}
			offsets[k.topic][k.id] = kgo.EpochOffset{Epoch: -1, Offset: o}
			last[k] = o
		}
	}
	s.partsMu.Unlock()
	if len(offsets) == 0 {
		return
	}
	s.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("webhook: offset commit failed; retrying next interval", zap.Error(err))
			}
			clear(last)
			return
		}
		commitErrors(resp, func(k tp, err error) {
			delete(last, k)
			s.log.Debug("webhook: offset commit of a partition failed; retrying next interval",
				zap.String("topic", k.topic), zap.Int32("partition", k.id), zap.Error(err))
		})
	})
}

func (s *Sink) decodeSnapshot(ctx context.Context, r *kgo.Record) (avro.Snapshot, error) {
	if err := chunked.Err(r); err != nil {
		return avro.Snapshot{}, err
	}
	_, body, err := s.registry.Resolve(ctx, r.Value)
	if err != nil {
		return avro.Snapshot{}, err
	}
	if chunked.Reassembled(r) {
		// The value is the record's own buffer, as large as the payload: the payload stays
		// in it rather than being copied.
		return avro.DecodeSnapshotShared(body)
	}
	return avro.DecodeSnapshot(body)
}

// match builds a task per subscription of the snapshot's tenant and event type whose lifetime
// covers the snapshot's commit (coversCommit), and one per recently disabled subscription
// that does not, so that the delivery is logged as "disabled target".
func (s *Sink) match(p *partition, snap *avro.Snapshot) []*task {
	enabled, disabled := s.idx.match(snap.Tenant, snap.EventType)
	if len(enabled)+len(disabled) == 0 {
		return nil
	}
	byLSN := s.cfg.Deliver.SubscriptionLifetime == config.LifetimeCommitLSN
	now := s.now()
	tasks := make([]*task, 0, len(enabled)+len(disabled))
	add := func(sub *Subscription) {
		tasks = append(tasks, &task{
			job:  Job{Subscription: sub.UUID, Snapshot: toSnapJSON(snap), Attempt: 1, FirstAttempt: now, Kind: "snapshot"},
			snap: *snap, ordered: sub.Ordered && sub.Enabled, part: p,
		})
	}
	for _, sub := range enabled {
		if coversCommit(sub, snap.CommitLSN, byLSN) {
			add(sub)
		}
	}
	for _, sub := range disabled {
		if coversCommit(sub, snap.CommitLSN, byLSN) {
			add(sub) // dispatch delivers it when its commit preceded the disable, else logs a disabled target
		}
	}
	return tasks
}

// forgetColdLoop drops disabled subscriptions from memory coldRetention after they went cold.
func (s *Sink) forgetColdLoop(ctx context.Context) {
	t := time.NewTicker(coldRetention / 10)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.idx.forgetCold(now, coldRetention)
		}
	}
}

// syncTimeout bounds how long a snapshot waits for the subscription index to catch up with its
// commit (PostgreSQL unreachable, say); it is then matched against the index as it is.
const syncTimeout = 10 * time.Second

// awaitSubscriptions waits until the subscription index holds every change committed before
// snap's commit (subscription lifetime by commit LSN), so that a subscription created just
// before the snapshot's transaction committed is not missed however late its NOTIFY arrives.
func (s *Sink) awaitSubscriptions(ctx context.Context, snap *avro.Snapshot) {
	if s.cfg.Deliver.SubscriptionLifetime != config.LifetimeCommitLSN || snap.CommitLSN == 0 {
		return
	}
	if s.idx.waitSynced(ctx, snap.CommitLSN, syncTimeout) || ctx.Err() != nil {
		return
	}
	if last := s.syncWarned.Load(); time.Since(time.Unix(0, last)) > time.Minute && s.syncWarned.CompareAndSwap(last, time.Now().UnixNano()) {
		s.log.Warn("webhook: snapshot matched before the subscription index caught up with its commit LSN; "+
			"subscriptions changed around its commit may be matched by their current state. Either PostgreSQL (postgres.url) is "+
			"unreachable, or the hook tables are not in the source database's cluster: then set deliver.subscription_lifetime: read",
			zap.Uint64("commit_lsn", snap.CommitLSN), zap.String("root_key", snap.Key))
	}
}

// dispatch hands a due task to its endpoint, or ends it when its subscription is disabled or
// gone. It reports whether the endpoint's queue is full (see endpoints.submit).
func (s *Sink) dispatch(t *task) (full bool) {
	sub := s.idx.get(t.job.Subscription)
	switch {
	case sub == nil:
		s.finishWithout(t, OutcomeUnknown, "subscription no longer exists")
	case stopsDelivery(sub, &t.snap, s.cfg.Deliver.SubscriptionLifetime == config.LifetimeCommitLSN):
		s.finishWithout(t, OutcomeDisabledTarget, sub.DisabledReason)
	default:
		return s.eps.submit(t, sub)
	}
	return false
}
