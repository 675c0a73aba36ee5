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
	"github.com/walhook/walhook/internal/chunked"
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
	asm := chunked.NewAssembler(false) // records above kafka.max_record_bytes are chunk groups
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
		var finished []int32
		for _, r := range fs.Records() {
			if end, ok := left[r.Partition]; ok && r.Offset+1 >= end {
				finished = append(finished, r.Partition)
			}
		}
		for _, r := range asm.Fetches(fs).Records() {
			end, ok := left[r.Partition]
			if !ok || r.Offset >= end || chunked.Err(r) != nil {
				continue // a chunk group that does not reassemble is no record to read
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		for _, p := range finished {
			delete(left, p)
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
//
// A record above kafka.max_record_bytes ends in the last chunk of its group, at offset: it is
// read again from before its first chunk and returned reassembled (one producer writes a group's
// chunks one after the other; other producers' records may come between them).
func ReadAt(ctx context.Context, cfg config.Kafka, topic string, partition int32, offset int64) (*kgo.Record, error) {
	r, err := ReadFirst(ctx, cfg, topic, partition, offset)
	if err == nil && r.Offset != offset {
		err = fmt.Errorf("%w: %s[%d]@%d", ErrNoRecord, topic, partition, offset)
	}
	if err != nil || !chunked.IsChunk(r) {
		return r, err
	}
	return readAssembled(ctx, cfg, topic, partition, max(0, offset-4*int64(chunked.Count(r))), offset)
}

// partitionReader is a direct read_committed consumer of one partition from offset.
func partitionReader(cfg config.Kafka, topic string, partition int32, offset int64) (*kgo.Client, error) {
	opts, err := Opts(cfg)
	if err != nil {
		return nil, err
	}
	return kgo.NewClient(append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topic: {partition: kgo.NewOffset().At(offset)}}), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(200*time.Millisecond))...)
}

// readAssembled reads partition from start and returns the record at offset, reassembled from
// its chunks.
func readAssembled(ctx context.Context, cfg config.Kafka, topic string, partition int32, start, offset int64) (*kgo.Record, error) {
	cl, err := partitionReader(cfg, topic, partition, start)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	none := fmt.Errorf("%w: %s[%d]@%d (its chunk group does not reassemble)", ErrNoRecord, topic, partition, offset)
	ctx, cancel := context.WithTimeout(ctx, readAtTimeout)
	defer cancel()
	asm := chunked.NewAssembler(false)
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, none
		}
		past := false
		fs.EachRecord(func(r *kgo.Record) { past = past || r.Offset >= offset })
		var found *kgo.Record
		asm.Fetches(fs).EachRecord(func(r *kgo.Record) {
			if r.Offset == offset && chunked.Err(r) == nil {
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

// ReadFirst reads the first committed record of topic's partition at or after offset (markers
// and aborted records are skipped); an error wrapping ErrNoRecord when there is none before
// the end of the log.
func ReadFirst(ctx context.Context, cfg config.Kafka, topic string, partition int32, offset int64) (*kgo.Record, error) {
	cl, err := partitionReader(cfg, topic, partition, offset)
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
