package avro

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
)

// TopicRegistry frames values with Avro single-object encoding and keeps
// the schemas in a compacted Kafka topic, key = fingerprint as 16 hex
// digits, value = schema text. Writers publish a schema synchronously before
// the first record that uses it; readers read the whole topic when they meet
// an unknown fingerprint.
type TopicRegistry struct {
	client *kgo.Client
	topic  string

	// publishMu serializes publishing so each schema is produced once per
	// process. It is taken before mu.
	publishMu sync.Mutex

	mu      sync.RWMutex
	schemas map[uint64]string // fingerprint → text; guarded by mu
	known   map[uint64][]byte // fingerprint → prefix, for schemas published or read; guarded by mu
}

// NewTopicRegistry returns a Registry storing schemas in topic through
// client. The client must not be transactional: schema records are
// produced outside any transaction so that an aborted one cannot take a
// schema with it. Readers connect with client's seed brokers, dialer, TLS
// and SASL settings.
func NewTopicRegistry(client *kgo.Client, topic string) Registry {
	return &TopicRegistry{client: client, topic: topic, schemas: map[uint64]string{}, known: map[uint64][]byte{}}
}

// CreateSchemaTopic creates the schema topic: one partition, compacted so a
// schema is never deleted by age. An existing topic is not an error.
// replicationFactor -1 takes the broker default.
func CreateSchemaTopic(ctx context.Context, client *kgo.Client, topic string, replicationFactor int16) error {
	configs := map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}
	resp, err := kadm.NewClient(client).CreateTopic(ctx, 1, replicationFactor, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("avro: creating schema topic %q: %w", topic, err)
	}
	return nil
}

// Prefix implements Registry; topic is not used: fingerprints are global.
func (r *TopicRegistry) Prefix(ctx context.Context, _ string, schema *Schema) ([]byte, error) {
	if p, ok := r.prefix(schema.Fingerprint); ok {
		return p, nil
	}
	r.publishMu.Lock()
	defer r.publishMu.Unlock()
	if p, ok := r.prefix(schema.Fingerprint); ok {
		return p, nil
	}
	// Read what earlier processes published: a schema already there needs
	// no record, and a different one under the same fingerprint must stop us.
	if err := r.refresh(ctx); err != nil {
		return nil, fmt.Errorf("%w; create the topic with CreateSchemaTopic", err)
	}
	if text, ok := r.schema(schema.Fingerprint); ok {
		if text != schema.JSON {
			return nil, collisionError(schema, text, r.topic)
		}
		return r.remember(schema.Fingerprint, text), nil
	}
	rec := &kgo.Record{Topic: r.topic, Key: []byte(fingerprintKey(schema.Fingerprint)), Value: []byte(schema.JSON)}
	if err := r.client.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return nil, fmt.Errorf("avro: publishing schema %s (%s) to schema topic %q: %w; create the topic with CreateSchemaTopic",
			schema.FullName, fingerprintKey(schema.Fingerprint), r.topic, err)
	}
	return r.remember(schema.Fingerprint, schema.JSON), nil
}

// ErrFingerprintCollision: two different schema texts share a canonical
// form, so single-object encoding cannot tell their records apart.
var ErrFingerprintCollision = errors.New("avro: schema fingerprint collision")

// collisionError explains the Parsing Canonical Form's blind spot: it drops
// logical types (decimal precision and scale, timestamp kinds) and custom
// properties (pg.type), so e.g. numeric(10,2) → numeric(12,4) or text →
// jsonb keeps the fingerprint while changing how bodies must be read.
func collisionError(schema *Schema, published, topic string) error {
	return fmt.Errorf("%w: %s has fingerprint %s, which schema topic %q already holds for a different schema text "+
		"(a column changed only its logical type, decimal scale or PostgreSQL type); single-object encoding "+
		"cannot tell the two apart: configure a schema registry, or rename the column in the migration.\nnew: %s\npublished: %s",
		ErrFingerprintCollision, schema.FullName, fingerprintKey(schema.Fingerprint), topic, schema.JSON, published)
}

func fingerprintKey(fp uint64) string {
	s := strconv.FormatUint(fp, 16)
	return "0000000000000000"[len(s):] + s
}

func (r *TopicRegistry) prefix(fp uint64) ([]byte, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.known[fp]
	return p, ok
}

func (r *TopicRegistry) remember(fp uint64, text string) []byte {
	p := SingleObjectPrefix(fp)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.schemas[fp], r.known[fp] = text, p
	return p
}

// Resolve implements Registry. An unknown fingerprint makes it read the
// schema topic up to its current end once before giving up.
func (r *TopicRegistry) Resolve(ctx context.Context, value []byte) (string, []byte, error) {
	fp, body, err := SplitSingleObject(value)
	if err != nil {
		return "", nil, err
	}
	if text, ok := r.schema(fp); ok {
		return text, body, nil
	}
	if err := r.refresh(ctx); err != nil {
		return "", nil, fmt.Errorf("%w: reading schema topic %q: %w", ErrRegistryUnavailable, r.topic, err)
	}
	if text, ok := r.schema(fp); ok {
		return text, body, nil
	}
	return "", nil, fmt.Errorf("%w: fingerprint %s is not in schema topic %q", ErrUnknownSchema, fingerprintKey(fp), r.topic)
}

func (r *TopicRegistry) schema(fp uint64) (string, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	text, ok := r.schemas[fp]
	return text, ok
}

// refresh reads the schema topic from its start to the end offsets it has
// now, with a short-lived direct consumer (the caller's client may belong
// to a group or have its own consumption).
func (r *TopicRegistry) refresh(ctx context.Context) error {
	remaining, err := r.unreadPartitions(ctx)
	if err != nil || len(remaining) == 0 {
		return err
	}
	reader, err := kgo.NewClient(r.readerOpts()...)
	if err != nil {
		return fmt.Errorf("avro: reading schema topic %q: %w", r.topic, err)
	}
	defer reader.Close()
	for len(remaining) > 0 {
		fetches := reader.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("avro: reading schema topic %q: %w", r.topic, err)
		}
		fetches.EachError(func(_ string, _ int32, e error) { err = e })
		if err != nil {
			return fmt.Errorf("avro: reading schema topic %q: %w", r.topic, err)
		}
		fetches.EachRecord(func(rec *kgo.Record) {
			r.learn(rec)
			if end, ok := remaining[rec.Partition]; ok && rec.Offset+1 >= end {
				delete(remaining, rec.Partition)
			}
		})
	}
	return nil
}

// unreadPartitions returns the end offset of each non-empty partition.
func (r *TopicRegistry) unreadPartitions(ctx context.Context) (map[int32]int64, error) {
	// Stages start together and any of them may be the one creating the schema topic: a topic
	// created a moment ago can still be unknown to the broker answering, so that is retried
	// briefly before it counts as missing.
	//
	// A broker that just died still leads its partitions until the controller notices
	// (broker.session.timeout.ms, then an election), so listings to it fail to dial for a while:
	// such errors are retried through a failover (failoverWait) rather than stopping the stage.
	start := time.Now()
	for {
		ends, err := r.listPartitions(ctx)
		switch {
		case err == nil:
			return ends, nil
		case errors.Is(err, kerr.UnknownTopicOrPartition) && time.Since(start) < 5*time.Second:
		case !errors.Is(err, kerr.UnknownTopicOrPartition) && transientListError(err) && time.Since(start) < failoverWait:
		default:
			return ends, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// failoverWait bounds how long a listing keeps retrying a broker failover.
const failoverWait = time.Minute

// transientListError: every failed part of a listing failed for a reason a failover explains
// (the broker did not answer, or Kafka calls the error retriable), not for an authorization or
// a bad request that waiting cannot fix.
func transientListError(err error) bool {
	var shards *kadm.ShardErrors
	if errors.As(err, &shards) && len(shards.Errs) > 0 {
		for _, se := range shards.Errs {
			if !transientListError(se.Err) {
				return false
			}
		}
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr) || kerr.IsRetriable(err) || errors.Is(err, kerr.NotLeaderForPartition)
}

func (r *TopicRegistry) listPartitions(ctx context.Context) (map[int32]int64, error) {
	adm := kadm.NewClient(r.client)
	starts, err := adm.ListStartOffsets(ctx, r.topic)
	if err == nil {
		err = starts.Error()
	}
	ends, err2 := adm.ListEndOffsets(ctx, r.topic)
	if err == nil {
		err = errors.Join(err2, ends.Error())
	}
	if err != nil {
		return nil, fmt.Errorf("avro: listing offsets of schema topic %q: %w", r.topic, err)
	}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if s, ok := starts.Lookup(o.Topic, o.Partition); !ok || s.Offset < o.Offset {
			remaining[o.Partition] = o.Offset
		}
	})
	return remaining, nil
}

// learn stores a schema record whose key matches its text's fingerprint;
// anything else in the topic is ignored.
func (r *TopicRegistry) learn(rec *kgo.Record) {
	s, err := ParseSchema(string(rec.Value))
	if err != nil || fingerprintKey(s.Fingerprint) != string(rec.Key) {
		return
	}
	r.remember(s.Fingerprint, s.JSON)
}

// readerOpts copies the connection settings of the caller's client.
func (r *TopicRegistry) readerOpts() []kgo.Opt {
	opts := []kgo.Opt{
		kgo.ConsumeTopics(r.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}
	if seeds, ok := r.client.OptValue(kgo.SeedBrokers).([]string); ok {
		opts = append(opts, kgo.SeedBrokers(seeds...))
	}
	if dial, ok := r.client.OptValue(kgo.Dialer).(func(ctx context.Context, network, host string) (net.Conn, error)); ok && dial != nil {
		opts = append(opts, kgo.Dialer(dial))
	}
	if tlsCfg, ok := r.client.OptValue(kgo.DialTLSConfig).(*tls.Config); ok && tlsCfg != nil {
		opts = append(opts, kgo.DialTLSConfig(tlsCfg))
	}
	if mechs, ok := r.client.OptValue(kgo.SASL).([]sasl.Mechanism); ok && len(mechs) > 0 {
		opts = append(opts, kgo.SASL(mechs...))
	}
	return opts
}
