package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/deadletter"
)

// deadLetter is the poison-topic record of rec, produced in the transaction that commits rec's
// offset, so a record is either processed or dead-lettered, exactly once.
func (s *Stage) deadLetter(rec *kgo.Record, reason error) *kgo.Record {
	return deadletter.Record(s.poisonTopic, config.StageBubbleUp, rec, reason, time.Now())
}

// flat lists the records of batches.
func flat(batches map[topicPartition][]*kgo.Record) []*kgo.Record {
	var out []*kgo.Record
	for _, recs := range batches {
		out = append(out, recs...)
	}
	return out
}

// refPoison handles a reference-topic record that does not decode. The reference reader is
// not transactional (it commits no offsets: every start reads the reference topics again), so
// the record is copied to the poison topic at once, and copied again by a later start.
func (s *Stage) refPoison(ctx context.Context, rec *kgo.Record, err error) error {
	pos := deadletter.Position{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}
	if s.cfg.BubbleUp.OnPoison == config.PoisonStop {
		// Not a StopError: `walhook dlq skip` moves a consumer group, and the reference reader
		// has none; every start reads the topic from its beginning again.
		return fmt.Errorf("pipeline: reference record %s cannot be decoded: %w; bubbleup.on_poison is %q, so the stage stopped. "+
			"A reference topic is read from its start on every start, so the record cannot be skipped: set bubbleup.on_poison: %s to copy it to %s and go on "+
			"(a tombstone for its key on %s removes it only when compaction runs, bubbleup.reference_history later at the earliest)",
			pos, err, config.PoisonStop, config.PoisonDeadLetter, s.poisonTopic, rec.Topic)
	}
	if perr := s.admin.ProduceSync(ctx, s.deadLetter(rec, err)).FirstErr(); perr != nil {
		return fmt.Errorf("pipeline: copying the undecodable reference record %s (%v) to the poison topic %s: %w", pos, err, s.poisonTopic, perr)
	}
	s.metrics.poison.WithLabelValues(rec.Topic, deadletter.CauseDecode).Inc()
	s.log.Warn("undecodable reference record copied to the poison topic; continuing with the next record",
		zap.Stringer("record", pos), zap.String("poison_topic", s.poisonTopic), zap.Error(err))
	return nil
}
