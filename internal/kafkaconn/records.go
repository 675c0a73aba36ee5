package kafkaconn

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/config"
)

// ProducerOpts are the options every walhook producer shares: kafka.compression and a batch
// limit of kafka.max_record_bytes (a record above it is split by package chunked before it is
// produced, so kgo never refuses one as MESSAGE_TOO_LARGE).
func ProducerOpts(k config.Kafka) []kgo.Opt {
	return []kgo.Opt{
		kgo.ProducerBatchCompression(Codec(k.Compression), kgo.NoCompression()),
		kgo.ProducerBatchMaxBytes(int32(RecordLimit(k))),
	}
}

// RecordLimit is kafka.max_record_bytes, its default when unset (a config built without
// SetDefaults, as tests do).
func RecordLimit(k config.Kafka) int {
	if k.MaxRecordBytes <= 0 {
		return config.DefaultMaxRecordBytes
	}
	return k.MaxRecordBytes
}

// Codec is the franz-go codec of a kafka.compression value.
func Codec(name string) kgo.CompressionCodec {
	switch name {
	case "gzip":
		return kgo.GzipCompression()
	case "snappy":
		return kgo.SnappyCompression()
	case "zstd":
		return kgo.ZstdCompression()
	case "none":
		return kgo.NoCompression()
	default:
		return kgo.Lz4Compression()
	}
}

// WithRecordLimits returns specs with max.message.bytes (kafka.max_record_bytes) and
// compression.type=producer added to the configs of the topics they create. "producer" keeps
// the batches as walhook's producers compressed them (kafka.compression): a topic codec would
// have the brokers recompress every batch, and a batch of incompressible data that the producer
// sent uncompressed could grow past max.message.bytes in the broker's codec.
func WithRecordLimits(k config.Kafka, specs []TopicSpec) []TopicSpec {
	out := make([]TopicSpec, len(specs))
	for i, s := range specs {
		c := maps.Clone(s.Configs)
		if c == nil {
			c = map[string]string{}
		}
		if _, ok := c["max.message.bytes"]; !ok {
			c["max.message.bytes"] = strconv.Itoa(RecordLimit(k))
		}
		if _, ok := c["compression.type"]; !ok {
			c["compression.type"] = "producer"
		}
		s.Configs = c
		out[i] = s
	}
	return out
}

// CheckRecordLimit checks that every topic of names takes records of kafka.max_record_bytes:
// its max.message.bytes (the topic's, or the broker's message.max.bytes it inherits) must be
// at least that. A smaller one would fail the first large record in production; it is refused
// at start with the topic, both values and the fix, every such topic at once.
func CheckRecordLimit(ctx context.Context, adm *kadm.Client, k config.Kafka, names ...string) error {
	want := make(map[string]int, len(names))
	for _, n := range names {
		want[n] = RecordLimit(k)
	}
	return checkRecordLimits(ctx, adm, want)
}

// checkRecordLimits checks the max.message.bytes of each topic of want against its minimum.
func checkRecordLimits(ctx context.Context, adm *kadm.Client, want map[string]int) error {
	if len(want) == 0 {
		return nil
	}
	names := slices.Sorted(maps.Keys(want))
	rcs, err := adm.DescribeTopicConfigs(ctx, names...)
	if err != nil {
		return fmt.Errorf("kafka: describe configs of %v (to check max.message.bytes): %w", names, err)
	}
	var errs []error
	for _, rc := range rcs {
		if errors.Is(rc.Err, kerr.UnknownTopicOrPartition) {
			// Another stage is creating it this moment (they start together): it gets the
			// limit from its creator, who checks it.
			continue
		}
		if rc.Err != nil {
			errs = append(errs, fmt.Errorf("kafka: describe configs of topic %q: %w", rc.Name, rc.Err))
			continue
		}
		for _, c := range rc.Configs {
			if c.Key != "max.message.bytes" {
				continue
			}
			got, err := strconv.Atoi(c.MaybeValue())
			limit := want[rc.Name]
			if err != nil || got >= limit {
				continue
			}
			errs = append(errs, fmt.Errorf("kafka: topic %q has max.message.bytes=%d, below kafka.max_record_bytes=%d: "+
				"raise it (`kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics --entity-name %s --add-config max.message.bytes=%d`) "+
				"or lower kafka.max_record_bytes to %d or less (larger values are then carried as more chunk records)",
				rc.Name, got, limit, rc.Name, limit, got))
		}
	}
	return errors.Join(errs...)
}
