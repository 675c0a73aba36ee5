package cdc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/walhook/walhook/internal/chunked"
	"github.com/walhook/walhook/internal/deadletter"
	"github.com/walhook/walhook/internal/kafkaconn"
)

// Producer tuning. Linger is small so a quiet pipeline is not delayed; batches are large so a
// busy one is fast. maxInflightBytes bounds what the stream has produced and Kafka has not yet
// acknowledged; the stream waits (answering the server meanwhile) above it.
const (
	producerLinger   = 5 * time.Millisecond
	maxInflightBytes = 16 << 20
)

// manualPartition marks records whose Partition field is set by the stage (watermarks, which
// go to every partition of a reference topic).
type manualPartition struct{ context.Context }

// partitioner partitions keyed records exactly like the Java client (murmur2 of the key,
// kgo's default for keyed records) and records marked manualPartition by their Partition.
type partitioner struct {
	inner  kgo.Partitioner
	manual context.Context
}

func (p partitioner) ForTopic(t string) kgo.TopicPartitioner {
	return topicPartitioner{p.inner.ForTopic(t), p.manual}
}

type topicPartitioner struct {
	inner  kgo.TopicPartitioner
	manual context.Context
}

func (p topicPartitioner) RequiresConsistency(r *kgo.Record) bool {
	return r.Context == p.manual || p.inner.RequiresConsistency(r)
}

func (p topicPartitioner) Partition(r *kgo.Record, n int) int {
	if r.Context == p.manual {
		return int(r.Partition)
	}
	return p.inner.Partition(r, n)
}

// retryLogger logs broker trouble at warn: kgo retries produce requests (indefinitely, see
// RecordDeliveryTimeout) and these lines tell an operator why the stage is paused.
type retryLogger struct{ log *zap.Logger }

func (h retryLogger) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err != nil {
		h.log.Warn("kafka broker unreachable; retrying (the stage pauses, nothing is lost)",
			zap.String("broker", net.JoinHostPort(meta.Host, fmt.Sprint(meta.Port))), zap.Error(err))
	}
}

func (h retryLogger) OnBrokerE2E(meta kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	if err := e2e.Err(); err != nil && key == 0 { // 0: Produce
		h.log.Warn("kafka produce request failed; retrying",
			zap.String("broker", net.JoinHostPort(meta.Host, fmt.Sprint(meta.Port))), zap.Error(err))
	}
}

// newProducer builds the stage's client: idempotent, acks=all (kgo's defaults), records never
// time out (a broker outage pauses the stage instead of failing it).
func (s *Stage) newProducer(manual context.Context) (*kgo.Client, error) {
	opts, err := kafkaconn.Opts(s.cfg.Kafka)
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(producerLinger),
		kgo.MaxBufferedRecords(1<<20),
		kgo.RecordDeliveryTimeout(0),
		// A value above kafka.max_record_bytes goes as chunks (produceAck), placed by its key.
		kgo.RecordPartitioner(chunked.Partitioner(partitioner{kgo.StickyKeyPartitioner(nil), manual})),
		kgo.WithHooks(retryLogger{s.log}),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("cdc: kafka client: %w", err)
	}
	return cl, nil
}

// readCompacted reads topic from the start to its current end, calling fn for every record.
func (s *Stage) readCompacted(ctx context.Context, adm *kadm.Client, topic string, fn func(k, v []byte)) error {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("cdc: end offsets of %s: %w", topic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	if len(want) == 0 {
		return nil
	}
	opts, err := kafkaconn.Opts(s.cfg.Kafka)
	if err != nil {
		return err
	}
	parts := map[int32]kgo.Offset{}
	for p := range want {
		parts[p] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}))...)
	if err != nil {
		return fmt.Errorf("cdc: kafka client: %w", err)
	}
	defer cl.Close()
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, fe := range fs.Errors() {
			return fmt.Errorf("cdc: read %s partition %d: %w", fe.Topic, fe.Partition, fe.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			fn(r.Key, r.Value)
			if r.Offset+1 >= want[r.Partition] {
				delete(want, r.Partition)
			}
		})
	}
	return nil
}

// topicPartitions returns the partition count of topic as a broker reports it now (0 while a
// just-created topic has none yet), bypassing the client's metadata cache.
func topicPartitions(ctx context.Context, cl *kgo.Client, topic string) (int32, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, err
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) && !errors.Is(err, kerr.LeaderNotAvailable) {
			return 0, err
		}
		return int32(len(t.Partitions)), nil
	}
	return 0, nil
}

// produceError is a record the broker refused after kgo's retries, named by its table, LSN,
// topic and size, so the error that stops the stage says which row it was.
type produceError struct {
	topic, table, lsn string
	bytes             int
	err               error
}

func newProduceError(r *kgo.Record, err error) error {
	pe := &produceError{topic: r.Topic, bytes: len(r.Key) + len(r.Value), err: err}
	for _, h := range r.Headers {
		switch h.Key {
		case "walhook-table":
			pe.table = string(h.Value)
		case "walhook-lsn":
			pe.lsn = string(h.Value)
		}
	}
	return pe
}

func (e *produceError) Error() string {
	what := fmt.Sprintf("record of %d bytes to %s", e.bytes, e.topic)
	if e.table != "" {
		what += fmt.Sprintf(" (table %s, LSN %s)", e.table, e.lsn)
	}
	if deadletter.Permanent(e.err) {
		return fmt.Sprintf("%s refused for good: %v; the slot stays before this transaction, so nothing is lost, and every start meets the same record: "+
			"raise max.message.bytes of %s (kafka-configs.sh --alter --entity-type topics --entity-name %s --add-config max.message.bytes=N) "+
			"or leave the large column out of the model (exclude), then start cdc again", what, e.err, e.topic, e.topic)
	}
	return fmt.Sprintf("%s: %v", what, e.err)
}

func (e *produceError) Unwrap() error { return e.err }

// refusedBackoff is how long the stage waits before it returns an error of a record the broker
// refuses for good: the next start meets the same record, and a supervisor that restarts at once
// would make that a tight crash loop.
const refusedBackoff = 15 * time.Second

// backoffRefused returns err, after wait (or when ctx ends) when it is a record the
// broker refuses for good.
func backoffRefused(ctx context.Context, log *zap.Logger, wait time.Duration, err error) error {
	var pe *produceError
	if !errors.As(err, &pe) || !deadletter.Permanent(pe.err) || ctx.Err() != nil {
		return err
	}
	log.Error("cdc: a record is refused for good; exiting after a pause", zap.Duration("in", wait), zap.Error(err))
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return err
}
