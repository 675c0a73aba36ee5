package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/chunked"
	"github.com/walhook/walhook/internal/deadletter"
	"github.com/walhook/walhook/internal/kafkaconn"
	"go.uber.org/zap"
)

// loop is the transaction loop (the goroutine of Run). Each turn: poll a batch, begin a Kafka
// transaction, let each partition's worker apply its records to its overlay, produce the
// snapshots and changelog records, and end the transaction, which commits the consumed offsets
// with them. Only after a commit do the workers write their overlays to Pebble; after an abort
// they drop them and the session rewinds to the committed offsets. After a crash between the
// Kafka commit and the Pebble write the changelog is the truth: every assignment restores from it.
func (s *Stage) loop(ctx context.Context) error {
	sess, err := s.newSession()
	if err != nil {
		return err
	}
	// Initialising the producer before any restore fences this transactional id's previous
	// incarnation (a failed session of this process, or a static member's killed predecessor)
	// and ends its open transaction at once; a restore waits for open changelog transactions.
	if _, _, err := sess.Client().ProducerID(ctx); err != nil {
		sess.Close()
		if ctx.Err() != nil {
			return nil
		}
		return &kafkaconn.SessionError{Err: fmt.Errorf("pipeline: initialise transactional producer %s: %w", s.transactionalID, err)}
	}
	workers := map[topicPartition]*partWorker{}
	// Chunk groups are reassembled here; a poll that leaves one unfinished is followed by more
	// polls before the transaction, which commits every polled offset.
	asm := chunked.NewAssembler(true)
	asm.OnStray = s.strayChunk
	defer func() {
		sess.Close() // leaves the group (a static member stays); the revoke callback only queues
		for _, w := range workers {
			w.stop()
		}
	}()
	var polled time.Time // when the last poll returned, and kgo sent the next fetch
	for {
		t0 := time.Now()
		pctx, release := s.pollContext(ctx) // also ends when reference changes are due (reemit.go)
		fs := sess.PollRecords(pctx, s.retry.PollMax(s.cfg.BubbleUp.MaxPollRecords))
		release()
		if n := fs.NumRecords(); n > 0 && !s.retry.Isolating() && time.Since(t0) < staleFetchPoll && t0.Sub(polled) >= staleFetchAge {
			fs = append(fs, s.pollFresh(ctx, sess, s.cfg.BubbleUp.MaxPollRecords-n)...)
		}
		s.dropRevoked(workers, asm)
		fs = s.completeChunks(ctx, sess, asm, workers, asm.Fetches(fs))
		polled = time.Now()
		if ctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		fs.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) {
				return // the poll woke for due reference changes
			}
			s.log.Warn("fetch error", zap.String("topic", topic), zap.Int32("partition", p), zap.Error(err))
		})
		s.dropRevoked(workers, asm)
		batches := map[topicPartition][]*kgo.Record{}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			tp := topicPartition{p.Topic, p.Partition}
			batches[tp] = append(batches[tp], p.Records...)
			last := p.Records[len(p.Records)-1].Offset
			s.metrics.lag.WithLabelValues(p.Topic, strconv.Itoa(int(p.Partition))).Set(float64(max(0, p.HighWatermark-last-1)))
		})
		s.addReemitDue(workers, batches)
		if len(batches) == 0 {
			continue
		}
		if err := s.transact(ctx, sess, workers, batches); err != nil {
			var stop *deadletter.StopError
			if errors.As(err, &stop) {
				s.log.Error("stopping on a poison record (bubbleup.on_poison: stop)", zap.Error(err))
			}
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// completeChunks polls until no chunk group is unfinished, appending what it gets to fs: the
// transaction commits every offset polled, and one past a chunk of an unfinished group would
// lose the group if this member stopped before finishing it. A group's chunks were written in
// one transaction (or, by cdc, one after the other), so the rest arrives in the next fetches.
func (s *Stage) completeChunks(ctx context.Context, sess *kgo.GroupTransactSession, asm *chunked.Assembler, workers map[topicPartition]*partWorker, fs kgo.Fetches) kgo.Fetches {
	started := time.Now()
	warned := false
	for asm.Pending() && ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		more := sess.PollRecords(pctx, s.cfg.BubbleUp.MaxPollRecords)
		cancel()
		if more.IsClientClosed() {
			return fs
		}
		s.dropRevoked(workers, asm)
		if more.NumRecords() > 0 {
			fs = append(fs, asm.Fetches(more)...)
		}
		// A group nothing finishes becomes a record that does not decode (chunked.ErrCorrupt).
		if given := asm.Abandon(chunked.IdleTimeout); given != nil {
			s.log.Warn("chunked record given up: no chunk of it arrived for a while", zap.Duration("idle", chunked.IdleTimeout))
			fs = append(fs, given...)
		}
		if !warned && time.Since(started) > 10*time.Second {
			warned = true
			s.log.Warn("waiting for the rest of a chunked record (its producer may have stopped mid-record; cdc writes it again when it restarts)")
		}
	}
	return fs
}

// strayChunk logs a chunk no group waited for (the rest of a record whose producer stopped
// before finishing it, written again after its restart).
func (s *Stage) strayChunk(topic string, partition int32, offset int64, reason string) {
	s.metrics.strayChunks.Inc()
	s.log.Warn("chunk dropped", zap.String("topic", topic), zap.Int32("partition", partition), zap.Int64("offset", offset), zap.String("reason", reason))
}

// A poll that returns within staleFetchPoll took a fetch that was already buffered: kgo keeps
// one fetch per broker and sends the next only when that one is taken, so the buffered fetch holds
// what had arrived when the last poll returned. When that is staleFetchAge or more ago (the last
// transaction was long), the loop waits up to freshPollWait for the fetch kgo sends at once, so
// that what arrived during the last transaction rides in this one instead of the one after. A
// poll that waited (an idle loop) or follows a short transaction adds no wait.
const (
	staleFetchPoll = time.Millisecond
	staleFetchAge  = 10 * time.Millisecond
	freshPollWait  = 5 * time.Millisecond
)

// pollFresh polls the fetch sent when the previous poll took a buffered one, for at most
// freshPollWait. Its records join the same transaction: everything polled before End is
// committed with it, as for one larger poll.
func (s *Stage) pollFresh(ctx context.Context, sess *kgo.GroupTransactSession, maxRecords int) kgo.Fetches {
	if maxRecords <= 0 {
		return nil
	}
	fctx, cancel := context.WithTimeout(ctx, freshPollWait)
	defer cancel()
	fs := sess.PollRecords(fctx, maxRecords)
	if fs.NumRecords() == 0 && fctx.Err() != nil {
		return nil // the wait ended (its error fetch is not a fetch error) or ctx is done
	}
	return fs
}

func (s *Stage) newSession() (*kgo.GroupTransactSession, error) {
	topics := make([]string, 0, len(s.roots))
	for _, rm := range s.roots {
		topics = append(topics, rm.changeTopic)
	}
	onRevoked := func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
		s.reemitRevoked(m)
		s.revokedMu.Lock()
		defer s.revokedMu.Unlock()
		for t, ps := range m {
			for _, p := range ps {
				s.revoked = append(s.revoked, topicPartition{t, p})
			}
		}
	}
	opts := append(append([]kgo.Opt(nil), s.connOpts...),
		kgo.ConsumerGroup(s.groupID),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.TransactionalID(s.transactionalID),
		kgo.TransactionTimeout(s.cfg.BubbleUp.TransactionTimeout),
		kgo.RecordPartitioner(chunked.Partitioner(partitioner{changelog: s.changelog, byKey: kgo.StickyKeyPartitioner(nil)})),
		kgo.OnPartitionsRevoked(onRevoked),
		kgo.OnPartitionsLost(onRevoked),
		kgo.OnPartitionsAssigned(s.reemitAssigned),
		kgo.FetchMaxWait(250*time.Millisecond),
	)
	opts = append(opts, kafkaconn.GroupOpts(s.cfg.Kafka, s.cfg.BubbleUp.SessionTimeout)...)
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return nil, fmt.Errorf("pipeline: consumer group %s: %w", s.groupID, err)
	}
	return sess, nil
}

// dropRevoked stops the workers of partitions the group took away. A partition given back later
// gets a new worker, which restores from the changelog: another member may have moved it on.
func (s *Stage) dropRevoked(workers map[topicPartition]*partWorker, asm *chunked.Assembler) {
	s.revokedMu.Lock()
	revoked := s.revoked
	s.revoked = nil
	s.revokedMu.Unlock()
	for _, tp := range revoked {
		asm.Forget(tp.topic, tp.partition)
		if w := workers[tp]; w != nil {
			w.stop()
			delete(workers, tp)
		}
	}
}

// transact runs one Kafka transaction over batches.
func (s *Stage) transact(ctx context.Context, sess *kgo.GroupTransactSession, workers map[topicPartition]*partWorker, batches map[topicPartition][]*kgo.Record) error {
	if err := sess.Begin(); err != nil {
		return &kafkaconn.SessionError{Err: fmt.Errorf("pipeline: begin transaction: %w", err)}
	}
	// End runs on its own deadline: a shutdown in the middle still commits or aborts, so the
	// next owner's restore (which waits for open changelog transactions) does not wait for the
	// broker to time this one out.
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.BubbleUp.TransactionTimeout)
	defer cancel()
	involved := make(map[topicPartition]*partWorker, len(batches))
	for tp := range batches {
		w, err := s.worker(ctx, workers, tp)
		if err != nil {
			_, _ = sess.End(endCtx, kgo.TryAbort)
			return err
		}
		involved[tp] = w
	}
	// Each partition's records are produced as soon as its worker is done, so the produce
	// requests overlap the other partitions' work.
	var mu sync.Mutex
	var produceErr error
	promise := func(rec *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			produceErr = errors.Join(produceErr, fmt.Errorf("produce to %s key %q: %w", rec.Topic, rec.Key, err))
			mu.Unlock()
		}
	}
	// A record above kafka.max_record_bytes goes as its chunks, in this transaction, one
	// after the other (a partition's records come from one worker goroutine).
	produce := func(rec *kgo.Record) {
		if chunks := chunked.Split(rec, s.maxRecord); chunks != nil {
			s.metrics.chunkedRecords.Inc()
			for _, c := range chunks {
				sess.Produce(ctx, c, promise)
			}
			return
		}
		sess.Produce(ctx, rec, promise)
	}
	results := s.process(ctx, involved, batches, produce)
	var procErr error
	for _, r := range results {
		procErr = errors.Join(procErr, r.err)
	}
	if procErr != nil {
		_, _ = sess.End(endCtx, kgo.TryAbort)
		s.each(involved, (*partWorker).abort)
		var stop *deadletter.StopError
		if errors.As(procErr, &stop) && s.retry.StopLater(flat(batches)) {
			return nil // the records before the poison one are committed first, one per transaction
		}
		if errors.Is(procErr, avro.ErrRegistryUnavailable) {
			// Retried in a new session after RunSessions' backoff: the registry may come back.
			return &kafkaconn.SessionError{Err: fmt.Errorf("pipeline: %w", procErr)}
		}
		return fmt.Errorf("pipeline: %w", procErr)
	}
	start := time.Now()
	// Every promise must have run before deciding: kgo commits whatever succeeded when asked
	// to, so a record that failed in End's own flush would be lost with its offsets committed.
	// (End then has nothing left to flush; this costs no round trip.)
	if err := sess.Client().Flush(ctx); err != nil {
		_, _ = sess.End(endCtx, kgo.TryAbort)
		s.each(involved, (*partWorker).abort)
		return &kafkaconn.SessionError{Err: fmt.Errorf("pipeline: flush transaction: %w", err)}
	}
	mu.Lock()
	tryCommit := produceErr == nil && ctx.Err() == nil
	mu.Unlock()
	committed, err := sess.End(endCtx, kgo.TransactionEndTry(tryCommit))
	s.metrics.commitSeconds.Observe(time.Since(start).Seconds())
	if err != nil || !committed {
		s.metrics.aborts.Inc()
		s.each(involved, (*partWorker).abort)
		if err != nil {
			return &kafkaconn.SessionError{Err: fmt.Errorf("pipeline: end transaction: %w", err)}
		}
		if produceErr != nil {
			return s.retry.Failed(ctx, flat(batches), produceErr)
		}
		return nil
	}
	s.retry.Committed(flat(batches))
	// The workers write their overlays to Pebble on their own goroutines while the loop polls
	// the next batch; a worker's next batch runs after its write, and fails if the write did.
	for _, w := range involved {
		w.post((*partWorker).commit)
	}
	for _, r := range results {
		for et, n := range r.snaps {
			s.metrics.snapshots.WithLabelValues(et).Add(float64(n))
		}
		for _, p := range r.poisoned {
			s.metrics.poison.WithLabelValues(p.topic, p.cause).Inc()
		}
	}
	return nil
}

// worker returns the partition's worker, starting it and restoring its state first when the
// partition is new to this member.
func (s *Stage) worker(ctx context.Context, workers map[topicPartition]*partWorker, tp topicPartition) (*partWorker, error) {
	if w := workers[tp]; w != nil {
		return w, nil
	}
	rm := s.byTopic[tp.topic]
	if rm == nil {
		return nil, fmt.Errorf("pipeline: records from unexpected topic %s", tp.topic)
	}
	w := s.startWorker(rm, tp.partition)
	var err error
	w.do(func() { err = w.restore(ctx) })
	if err != nil {
		w.stop()
		return nil, err
	}
	workers[tp] = w
	return w, nil
}

// process runs every worker's batch concurrently, each on its own worker goroutine, hands each
// successful batch's records to produce as soon as that worker is done, and waits for all.
func (s *Stage) process(ctx context.Context, involved map[topicPartition]*partWorker, batches map[topicPartition][]*kgo.Record, produce func(*kgo.Record)) []batchResult {
	results := make([]batchResult, 0, len(involved))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for tp, w := range involved {
		wg.Go(func() {
			var r batchResult
			w.do(func() { r = w.process(ctx, batches[tp]) })
			if r.err == nil {
				for _, rec := range r.out {
					produce(rec)
				}
			}
			mu.Lock()
			results = append(results, r)
			mu.Unlock()
		})
	}
	wg.Wait()
	return results
}

func (s *Stage) each(ws map[topicPartition]*partWorker, fn func(*partWorker)) {
	for _, w := range ws {
		w.do(func() { fn(w) })
	}
}

// partitioner writes changelog records to the partition set on them (the input partition) and
// snapshots by key hash.
type partitioner struct {
	changelog string
	byKey     kgo.Partitioner
}

func (p partitioner) ForTopic(topic string) kgo.TopicPartitioner {
	if topic == p.changelog {
		return kgo.ManualPartitioner().ForTopic(topic)
	}
	return p.byKey.ForTopic(topic)
}
