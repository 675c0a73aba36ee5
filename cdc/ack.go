package cdc

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kgo"
)

// tracker keeps the positions apart: what the stream has produced and what Kafka has
// acknowledged. The confirmed LSN it reports is the end LSN of the newest transaction that,
// together with every earlier one, Kafka has fully acknowledged. It never moves on receipt.
//
// The stream goroutine opens and closes transactions and counts their records; kgo's promise
// goroutines call done. The queue, confirmed, err and each ackTxn's closed are guarded by mu.
// The per-record counters (inflight, ackTxn.outstanding) are atomics so that add and done, once
// per record, take no lock: done takes mu only when a transaction's last outstanding record is
// acknowledged.
//
// Race walk-through (why an atomic outstanding cannot confirm too early): a transaction is
// popped only when closed (set under mu by close, after its last add) and outstanding == 0.
// Before close, outstanding may touch 0 when Kafka acknowledges faster than the stream
// produces; done then calls advanceLocked, which stops at the unclosed transaction. After
// close no add follows, so outstanding only falls, and whichever of close or the last done
// runs advanceLocked second pops it.
type tracker struct {
	mu sync.Mutex
	// queue holds the unconfirmed transactions in commit order (guarded by mu).
	queue []*ackTxn
	// confirmed is the newest LSN safe to report as flushed (guarded by mu).
	confirmed pglogrepl.LSN
	// err is the first produce error; once set the stage stops (guarded by mu).
	err error
	// hasErr is set after err, so that failed needs no lock while all is well.
	hasErr atomic.Bool
	// inflight is the byte size of records produced and not yet acknowledged.
	inflight atomic.Int64
	// waiting is set while waitRoom blocks; done signals room only then.
	waiting atomic.Bool
	// room is signalled (non-blocking) when inflight shrinks or err is set while waiting.
	room chan struct{}
	// observe, when set, sees a sample of acknowledged records (produce latency). It is set
	// by the stream goroutine before its first record is produced and never changed.
	observe func(*kgo.Record)
}

// ackTxn is one source transaction (or heartbeat) whose records are in flight.
type ackTxn struct {
	tr          *tracker
	end         pglogrepl.LSN // LSN to confirm once complete; set by close (guarded by tr.mu)
	closed      bool          // every record of the transaction has been produced (guarded by tr.mu)
	outstanding atomic.Int64  // records produced and not yet acknowledged
	failed      bool          // a record was refused: never confirmed (guarded by tr.mu)
	// promise is the kgo promise of every record of the transaction: one closure per
	// transaction rather than one per record.
	promise func(*kgo.Record, error)
}

func newTracker(confirmed pglogrepl.LSN) *tracker {
	return &tracker{confirmed: confirmed, room: make(chan struct{}, 1)}
}

// open starts a transaction; its records are added with add before close.
func (t *tracker) open() *ackTxn {
	a := &ackTxn{tr: t}
	a.promise = func(r *kgo.Record, err error) {
		if err == nil && r.Offset&63 == 0 && t.observe != nil {
			t.observe(r) // one record in 64: the histogram costs more than the rest of done
		}
		if err != nil {
			err = newProduceError(r, err) // names the table, LSN and topic (produce.go)
		}
		t.done(a, recordSize(r), err)
	}
	t.mu.Lock()
	t.queue = append(t.queue, a)
	t.mu.Unlock()
	return a
}

// recordSize is what a record counts against maxInflightBytes: its key and value plus what
// it costs besides (the kgo.Record, its four headers, kgo's per-record bookkeeping and the
// slab space it pins), measured at about 380 bytes.
func recordSize(r *kgo.Record) int { return len(r.Key) + len(r.Value) + recordOverhead }

const recordOverhead = 384

// add counts one record of size bytes about to be produced for a.
func (t *tracker) add(a *ackTxn, size int) {
	a.outstanding.Add(1)
	t.inflight.Add(int64(size))
}

// done is the produce promise: one record of a is acknowledged (or failed).
func (t *tracker) done(a *ackTxn, size int, err error) {
	if err != nil {
		t.mu.Lock()
		if t.err == nil {
			t.err = err
			t.hasErr.Store(true)
		}
		a.failed = true
		t.mu.Unlock()
	}
	t.inflight.Add(-int64(size))
	if a.outstanding.Add(-1) == 0 || err != nil {
		t.mu.Lock()
		t.advanceLocked()
		t.mu.Unlock()
	}
	if t.waiting.Load() || err != nil {
		select {
		case t.room <- struct{}{}:
		default:
		}
	}
}

// close marks a complete: all its records have been produced; end is the LSN confirmed once
// they are all acknowledged.
func (t *tracker) close(a *ackTxn, end pglogrepl.LSN) {
	t.mu.Lock()
	a.end, a.closed = end, true
	t.advanceLocked()
	t.mu.Unlock()
}

// advanceLocked pops the complete transactions at the head of the queue.
func (t *tracker) advanceLocked() {
	i := 0
	for ; i < len(t.queue); i++ {
		a := t.queue[i]
		if !a.closed || a.outstanding.Load() > 0 || a.failed {
			break // a failed transaction, and everything after it, is streamed again after a restart
		}
		if a.end > t.confirmed {
			t.confirmed = a.end
		}
	}
	if i > 0 {
		n := copy(t.queue, t.queue[i:])
		clear(t.queue[n:])
		t.queue = t.queue[:n]
	}
}

// idle confirms lsn when nothing is in flight; see stream.onKeepalive for why that is safe.
// It reports whether it did.
func (t *tracker) idle(lsn pglogrepl.LSN) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.queue) > 0 {
		return false
	}
	if lsn > t.confirmed {
		t.confirmed = lsn
	}
	return true
}

// state returns the confirmed LSN and the first produce error.
func (t *tracker) state() (pglogrepl.LSN, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.confirmed, t.err
}

// failed returns the first produce error, without a lock while there is none (the stream
// checks it after every message).
func (t *tracker) failed() error {
	if !t.hasErr.Load() {
		return nil
	}
	_, err := t.state()
	return err
}

// over reports whether more than limit bytes are in flight.
func (t *tracker) over(limit int64) bool { return t.inflight.Load() > limit }

// pending reports the transactions and bytes in flight.
func (t *tracker) pending() (txns int, bytes int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.queue), t.inflight.Load()
}

// waitRoom blocks while more than limit bytes are in flight, calling tick every time a
// status interval passes so the replication connection stays alive. It returns the first
// produce error, or ctx's.
func (t *tracker) waitRoom(ctx context.Context, limit int64, tick <-chan time.Time, onTick func() error) error {
	defer t.waiting.Store(false)
	for {
		// waiting is set before inflight is read, and done reads waiting after lowering
		// inflight, so a wake-up between the two is never lost.
		t.waiting.Store(true)
		t.mu.Lock()
		err := t.err
		t.mu.Unlock()
		if err != nil {
			return err
		}
		if t.inflight.Load() <= limit {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.room:
		case <-tick:
			if err := onTick(); err != nil {
				return err
			}
		}
	}
}
