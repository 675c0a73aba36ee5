package deadletter

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/walhook/walhook/config"
)

// Bounds of the retries of a transaction whose produce failed: each attempt waits
// retryBackoffMin doubled per consecutive failure, up to retryBackoffMax; a record alone in its
// transaction gets retryAttempts attempts.
const (
	retryBackoffMin = 100 * time.Millisecond
	retryBackoffMax = 10 * time.Second
	retryAttempts   = 3
)

// Retry turns a produce the broker refuses into bounded retries for a transactional stage
// (bubble-up, compliance) instead of a loop of aborted transactions. A transaction aborted
// after a produce error is retried after a backoff with one input record per transaction
// (PollMax), so the record whose output is refused is met alone; after retryAttempts attempts
// that record is dead-lettered when the error is the record's own (Permanent: MESSAGE_TOO_LARGE,
// INVALID_RECORD, ...) and on_poison is dead_letter: Refused reports it, and the stage copies
// the record to its poison topic in place of processing it. Otherwise the stage stops with the
// error. The same one-record mode lets on_poison: stop stop with the group's offset exactly at
// the poison record (StopLater).
//
// A Retry belongs to the stage's transaction loop goroutine; Refused may be called from the
// goroutines the loop waits for while it processes a batch.
type Retry struct {
	Stage       string // config.StageBubbleUp or config.StageCompliance
	OnPoison    string // config.PoisonDeadLetter or config.PoisonStop
	PoisonTopic string
	Log         *zap.Logger

	failures int // consecutive aborted transactions
	isolate  int // input records still to consume one per transaction
	attempts int // attempts of the record alone in its transaction
	refused  map[Position]error
}

// PollMax is how many records the next transaction may consume: n, or 1 while isolating.
func (r *Retry) PollMax(n int) int {
	if r.isolate > 0 {
		return 1
	}
	return n
}

// Isolating reports whether transactions run one record each.
func (r *Retry) Isolating() bool { return r.isolate > 0 }

// Refused returns why rec must be dead-lettered instead of processed: its output was refused
// for good.
func (r *Retry) Refused(rec *kgo.Record) (error, bool) {
	err, ok := r.refused[Position{rec.Topic, rec.Partition, rec.Offset}]
	return err, ok
}

// Committed records a committed transaction over recs.
func (r *Retry) Committed(recs []*kgo.Record) {
	r.failures, r.attempts = 0, 0
	r.isolate = max(0, r.isolate-len(recs))
	for _, rec := range recs {
		delete(r.refused, Position{rec.Topic, rec.Partition, rec.Offset})
	}
}

// StopLater reports whether a transaction over recs that met a poison record under on_poison:
// stop is retried one record per transaction instead of stopping now, so that the stage stops
// with the group's committed offset at the poison record, which `walhook dlq skip` moves past
// without skipping anything else.
func (r *Retry) StopLater(recs []*kgo.Record) bool {
	if len(recs) <= 1 {
		return false
	}
	r.isolate = len(recs)
	return true
}

// Failed handles a transaction over recs aborted after produceErr: it decides what the next
// attempt does and waits the backoff; it returns nil, or the error that stops the stage.
func (r *Retry) Failed(ctx context.Context, recs []*kgo.Record, produceErr error) error {
	r.failures++
	switch {
	case len(recs) > 1:
		r.isolate, r.attempts = len(recs), 0
		r.Log.Warn("transaction aborted after a produce error; retrying its records one per transaction to find the one refused",
			zap.Int("records", len(recs)), zap.Error(produceErr))
	case len(recs) == 1:
		r.attempts++
		rec := recs[0]
		pos := Position{rec.Topic, rec.Partition, rec.Offset}
		if _, again := r.refused[pos]; again {
			return fmt.Errorf("%s: copying %s to the poison topic %s failed too: %w; check that topic (walhook creates it; its max.message.bytes must fit the record)",
				r.Stage, pos, r.PoisonTopic, produceErr)
		}
		if r.attempts < retryAttempts {
			r.Log.Warn("transaction of one record aborted after a produce error; retrying", zap.Stringer("record", pos),
				zap.Int("attempt", r.attempts), zap.Error(produceErr))
			break
		}
		switch {
		case !Permanent(produceErr):
			return fmt.Errorf("%s: producing the output of %s failed %d times: %w; the error is not the record's own "+
				"(check the ACLs of the stage's principal: WRITE on its output and poison topics; and the brokers)", r.Stage, pos, r.attempts, produceErr)
		case r.OnPoison == config.PoisonStop:
			return &StopError{Stage: r.Stage, Record: pos, Reason: fmt.Errorf("its output was refused %d times: %w", r.attempts, produceErr)}
		}
		if r.refused == nil {
			r.refused = map[Position]error{}
		}
		r.refused[pos] = fmt.Errorf("its output was refused by the broker %d times: %w", r.attempts, produceErr)
		r.attempts = 0
		r.Log.Error("the output of a record was refused for good; copying the record to the poison topic and going on",
			zap.Stringer("record", pos), zap.String("poison_topic", r.PoisonTopic), zap.Error(produceErr))
		return nil // at once: the next attempt produces only the poison record
	}
	wait := min(retryBackoffMin<<min(r.failures-1, 10), retryBackoffMax)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return nil
}
