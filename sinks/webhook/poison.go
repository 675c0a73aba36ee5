package webhook

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/deadletter"
)

// poison handles a consumed record the sink cannot decode (another producer's, an unknown
// schema id, garbage). With deliver.on_poison dead_letter (the default) it copies the record to
// the sink's poison topic (config.PoisonTopic; failed deliveries have their own topic,
// webhook.dlq) and returns once the copy is acknowledged, so the offset committed after it never
// passes a record that is in neither place. With stop, or when the copy fails, it stops the sink
// with the error (Run returns it) and the partition's context ends, so the record is not marked
// handled and the committed offset stays at it.
func (s *Sink) poison(ctx context.Context, r *kgo.Record, reason error) {
	pos := deadletter.Position{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
	if s.cfg.Deliver.OnPoison == config.PoisonStop {
		err := &deadletter.StopError{Stage: config.StageDeliver, Record: pos, Reason: reason}
		s.log.Error("webhook: stopping on a poison record (deliver.on_poison: stop)", zap.Error(err))
		s.stop(err)
		return
	}
	topic := s.cfg.PoisonTopic(config.StageDeliver)
	if err := s.cl.ProduceSync(ctx, deadletter.Record(topic, config.StageDeliver, r, reason, s.now())).FirstErr(); err != nil {
		if ctx.Err() == nil {
			s.stop(fmt.Errorf("webhook: copying the poison record %s (%v) to %s: %w", pos, reason, topic, err))
		}
		return
	}
	s.m.poison.WithLabelValues(r.Topic, deadletter.CauseDecode).Inc()
	s.log.Warn("webhook: poison record copied to the poison topic; continuing with the next record", zap.Stringer("record", pos),
		zap.String("poison_topic", topic), zap.Error(reason))
}
