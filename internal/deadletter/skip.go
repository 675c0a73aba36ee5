package deadletter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/kafkaconn"
)

// Skip moves a stopped stage's consumer group past the record at pos: it copies the record to
// the stage's poison topic (reason says why), then commits pos.Offset+1 for the group. The
// group must have no members (the stage is stopped, as on_poison: stop leaves it); a group
// already past pos is left alone.
func Skip(ctx context.Context, cfg *config.Config, stage string, pos Position, reason string) error {
	topic, group := cfg.PoisonTopic(stage), cfg.StageGroup(stage)
	if topic == "" {
		return unknownStage(stage)
	}
	opts, err := kafkaconn.Opts(cfg.Kafka)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return fmt.Errorf("deadletter: describe group %s: %w", group, err)
	}
	if d := described[group]; len(d.Members) > 0 {
		return fmt.Errorf("deadletter: group %s has %d members: stop every %s process first (its committed offset cannot move under a running member)",
			group, len(d.Members), stage)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return fmt.Errorf("deadletter: committed offsets of group %s: %w", group, err)
	}
	at := int64(-1)
	if c, ok := committed.Lookup(pos.Topic, pos.Partition); ok && c.Err == nil && c.At >= 0 {
		at = c.At
	} else {
		starts, err := adm.ListStartOffsets(ctx, pos.Topic)
		if err != nil {
			return fmt.Errorf("deadletter: log start of %s: %w", pos.Topic, err)
		}
		if o, ok := starts.Lookup(pos.Topic, pos.Partition); ok && o.Err == nil {
			at = o.Offset
		}
	}
	if at < pos.Offset {
		// Only transaction markers or aborted records may lie between (the group commits
		// the offset after its last record, where a marker may follow).
		if first, err := kafkaconn.ReadFirst(ctx, cfg.Kafka, pos.Topic, pos.Partition, at); err == nil && first.Offset == pos.Offset {
			at = pos.Offset
		}
	}
	if at != pos.Offset {
		// Committing past pos from elsewhere would skip the records between, unprocessed.
		return fmt.Errorf("deadletter: group %s resumes %s[%d] at offset %d, not at %d: only the record the stage stopped at can be skipped",
			group, pos.Topic, pos.Partition, at, pos.Offset)
	}
	rec, err := kafkaconn.ReadAt(ctx, cfg.Kafka, pos.Topic, pos.Partition, pos.Offset)
	if err != nil {
		return fmt.Errorf("deadletter: %w", err)
	}
	if err := kafkaconn.EnsureTopics(ctx, adm, []kafkaconn.TopicSpec{TopicSpec(cfg, stage)}); err != nil {
		return fmt.Errorf("deadletter: %w", err)
	}
	if err := cl.ProduceSync(ctx, Record(topic, stage, rec, errors.New(reason), time.Now())).FirstErr(); err != nil {
		return fmt.Errorf("deadletter: copy %s to %s: %w", pos, topic, err)
	}
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: pos.Topic, Partition: pos.Partition, At: pos.Offset + 1, LeaderEpoch: -1})
	resp, err := adm.CommitOffsets(ctx, group, offs)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("deadletter: commit offset %d of %s[%d] for group %s (the record is in %s already): %w",
			pos.Offset+1, pos.Topic, pos.Partition, group, topic, err)
	}
	return nil
}

// TopicSpec is the stage's poison topic as the stage creates it: kafka.partitions partitions,
// cleanup.policy=delete with the broker's retention.
func TopicSpec(cfg *config.Config, stage string) kafkaconn.TopicSpec {
	return kafkaconn.TopicSpec{Name: cfg.PoisonTopic(stage), Partitions: cfg.Kafka.Partitions,
		ReplicationFactor: cfg.Kafka.ReplicationFactor, Configs: map[string]string{"cleanup.policy": "delete"}}
}
