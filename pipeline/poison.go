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

// Bounds of the retries of a transaction whose produce failed: each attempt waits
// produceBackoffMin doubled per consecutive failure, up to produceBackoffMax; a record alone in
// its transaction gets produceAttempts attempts.
const (
	produceBackoffMin = 100 * time.Millisecond
	produceBackoffMax = 10 * time.Second
	produceAttempts   = 3
)

// produceRetry turns a produce the broker refuses into bounded retries instead of a loop of
// aborted transactions. A transaction aborted after a produce error is retried after a backoff
// one input record per transaction (isolate), so the record whose output is refused is found
// alone; after produceAttempts attempts such a record is dead-lettered when the error is the
// record's own (deadletter.Permanent: MESSAGE_TOO_LARGE, INVALID_RECORD, ...) and bubbleup.on_poison
// is dead_letter, and otherwise the stage stops with the error. Owned by the loop goroutine;
// the workers read refused only inside process, which the loop waits for.
type produceRetry struct {
	failures int // consecutive aborted transactions
	isolate  int // input records still to consume one per transaction
	attempts int // attempts of the record alone in its transaction
	refused  map[topicPartition]map[int64]error
}

func (r *produceRetry) isolating() bool { return r.isolate > 0 }

func (r *produceRetry) pollMax(n int) int {
	if r.isolating() {
		return 1
	}
	return n
}

// stopLater reports whether a transaction over batches that met a poison record under
// on_poison: stop is retried one record per transaction instead of stopping now: the group then
// stops with its committed offset at the poison record, which `walhook dlq skip` moves past
// without skipping anything else.
func (r *produceRetry) stopLater(batches map[topicPartition][]*kgo.Record) bool {
	n := 0
	for _, recs := range batches {
		n += len(recs)
	}
	if n <= 1 {
		return false
	}
	r.isolate = n
	return true
}

// committed records a committed transaction over batches.
func (r *produceRetry) committed(batches map[topicPartition][]*kgo.Record) {
	r.failures, r.attempts = 0, 0
	for tp, recs := range batches {
		r.isolate = max(0, r.isolate-len(recs))
		if m := r.refused[tp]; m != nil && len(recs) > 0 {
			last := recs[len(recs)-1].Offset
			for off := range m {
				if off <= last {
					delete(m, off)
				}
			}
		}
	}
}

// failed handles a transaction over batches aborted after produceErr: it decides what the
// next attempt does, waits the backoff, and returns nil, or the error that stops the stage.
func (r *produceRetry) failed(ctx context.Context, s *Stage, batches map[topicPartition][]*kgo.Record, produceErr error) error {
	r.failures++
	var only *kgo.Record
	n := 0
	for _, recs := range batches {
		n += len(recs)
		if len(recs) > 0 {
			only = recs[0]
		}
	}
	switch {
	case n > 1:
		r.isolate, r.attempts = n, 0
		s.log.Warn("transaction aborted after a produce error; retrying its records one per transaction to find the one refused",
			zap.Int("records", n), zap.Error(produceErr))
	case n == 1:
		r.attempts++
		tp := topicPartition{only.Topic, only.Partition}
		pos := deadletter.Position{Topic: only.Topic, Partition: only.Partition, Offset: only.Offset}
		if _, again := r.refused[tp][only.Offset]; again {
			return fmt.Errorf("pipeline: copying %s to the poison topic %s failed too: %w; check that topic (walhook creates it; its max.message.bytes must fit the record)",
				pos, s.poisonTopic, produceErr)
		}
		if r.attempts < produceAttempts {
			s.log.Warn("transaction of one record aborted after a produce error; retrying", zap.Stringer("record", pos),
				zap.Int("attempt", r.attempts), zap.Error(produceErr))
			break
		}
		switch {
		case !deadletter.Permanent(produceErr):
			return fmt.Errorf("pipeline: producing the output of %s failed %d times: %w; the error is not the record's own "+
				"(check the ACLs of the stage's principal: WRITE on the snapshot, changelog and poison topics, and the brokers)", pos, r.attempts, produceErr)
		case s.cfg.BubbleUp.OnPoison == config.PoisonStop:
			return &deadletter.StopError{Stage: config.StageBubbleUp, Record: pos, Reason: fmt.Errorf("its output was refused %d times: %w", r.attempts, produceErr)}
		}
		if r.refused == nil {
			r.refused = map[topicPartition]map[int64]error{}
		}
		if r.refused[tp] == nil {
			r.refused[tp] = map[int64]error{}
		}
		r.refused[tp][only.Offset] = fmt.Errorf("its output was refused by the broker %d times: %w", r.attempts, produceErr)
		r.attempts = 0
		s.log.Error("the output of a record was refused for good; copying the record to the poison topic and going on",
			zap.Stringer("record", pos), zap.String("poison_topic", s.poisonTopic), zap.Error(produceErr))
		return nil // at once: the next attempt produces only the poison record
	}
	wait := min(produceBackoffMin<<min(r.failures-1, 10), produceBackoffMax)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return nil
}

// refPoison handles a reference-topic record that does not decode. The reference reader is
// not transactional (it commits no offsets: every start reads the reference topics again), so
// the record is copied to the poison topic at once, and copied again by a later start.
func (s *Stage) refPoison(ctx context.Context, rec *kgo.Record, err error) error {
	pos := deadletter.Position{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}
	if s.cfg.BubbleUp.OnPoison == config.PoisonStop {
		return &deadletter.StopError{Stage: config.StageBubbleUp, Record: pos, Reason: err}
	}
	if perr := s.admin.ProduceSync(ctx, s.deadLetter(rec, err)).FirstErr(); perr != nil {
		return fmt.Errorf("pipeline: copying the undecodable reference record %s (%v) to the poison topic %s: %w", pos, err, s.poisonTopic, perr)
	}
	s.metrics.poison.WithLabelValues(rec.Topic, deadletter.CauseDecode).Inc()
	s.log.Warn("undecodable reference record copied to the poison topic; continuing with the next record",
		zap.Stringer("record", pos), zap.String("poison_topic", s.poisonTopic), zap.Error(err))
	return nil
}
