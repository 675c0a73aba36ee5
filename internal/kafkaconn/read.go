package kafkaconn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/config"
)

// ReadTopic calls fn for every record of topic from its start up to its end offsets at the time
// of the call. It uses a direct (group-less) consumer of cfg's cluster.
func ReadTopic(ctx context.Context, cfg config.Kafka, topic string, fn func(*kgo.Record) error) error {
	opts, err := Opts(cfg)
	if err != nil {
		return err
	}
	adminCl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer adminCl.Close()
	ends, err := kadm.NewClient(adminCl).ListEndOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("kafkaconn: end offsets of %s: %w", topic, err)
	}
	if err := ends.Error(); errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil // not created yet: nothing to read
	} else if err != nil {
		return fmt.Errorf("kafkaconn: end offsets of %s: %w", topic, err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	if len(left) == 0 {
		return nil
	}
	// Read committed: the snapshot topics are written in bubble-up's transactions, and an aborted
	// snapshot must not be re-triggered.
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(200*time.Millisecond))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(left) > 0 {
		// A transactional partition ends with a commit marker, which the client never hands out,
		// so "the record at end-1 was seen" may never happen: a poll that finds nothing within a
		// second means everything below the end offsets has been read.
		pollCtx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if fs.NumRecords() == 0 && pollCtx.Err() != nil {
			return nil
		}
		if err := fs.Err0(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("kafkaconn: read %s: %w", topic, err)
		}
		for _, r := range fs.Records() {
			end, ok := left[r.Partition]
			if !ok || r.Offset >= end {
				continue
			}
			if err := fn(r); err != nil {
				return err
			}
			if r.Offset+1 >= end {
				delete(left, r.Partition)
			}
		}
	}
	return nil
}

// ErrNoRecord: the partition holds no committed record at the offset asked for (never written,
// deleted by retention, a transaction marker or an aborted record).
var ErrNoRecord = errors.New("kafkaconn: no record at that offset")

// readAtTimeout bounds reading one record by its offset.
const readAtTimeout = 10 * time.Second

// ReadAt reads the committed record of topic at partition and offset; an error wrapping
// ErrNoRecord when there is none.
func ReadAt(ctx context.Context, cfg config.Kafka, topic string, partition int32, offset int64) (*kgo.Record, error) {
	r, err := ReadFirst(ctx, cfg, topic, partition, offset)
	if err == nil && r.Offset != offset {
		err = fmt.Errorf("%w: %s[%d]@%d", ErrNoRecord, topic, partition, offset)
	}
	return r, err
}

// ReadFirst reads the first committed record of topic's partition at or after offset (markers
// and aborted records are skipped); an error wrapping ErrNoRecord when there is none before
// the end of the log.
func ReadFirst(ctx context.Context, cfg config.Kafka, topic string, partition int32, offset int64) (*kgo.Record, error) {
	opts, err := Opts(cfg)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topic: {partition: kgo.NewOffset().At(offset)}}), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(200*time.Millisecond))...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	none := fmt.Errorf("%w: %s[%d]@%d", ErrNoRecord, topic, partition, offset)
	ctx, cancel := context.WithTimeout(ctx, readAtTimeout)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, none
		}
		past := false
		fs.EachError(func(_ string, _ int32, err error) {
			// An offset out of range resets to the log end: nothing at offset.
			past = past || !errors.Is(err, context.DeadlineExceeded)
		})
		var found *kgo.Record
		fs.EachRecord(func(r *kgo.Record) {
			if found == nil && r.Offset >= offset {
				found = r
			}
		})
		if found != nil {
			return found, nil
		}
		if past {
			return nil, none
		}
	}
}
