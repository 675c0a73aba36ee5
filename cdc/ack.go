package cdc

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
)

// tracker keeps the positions apart: what the stream has produced and what Kafka has
// acknowledged. The confirmed LSN it reports is the end LSN of the newest transaction that,
// together with every earlier one, Kafka has fully acknowledged. It never moves on receipt.
//
// The stream goroutine opens and closes transactions and counts their records; kgo's promise
// goroutines call done. Everything is guarded by mu.
type tracker struct {
	mu sync.Mutex
	// queue holds the unconfirmed transactions in commit order (guarded by mu).
	queue []*ackTxn
	// confirmed is the newest LSN safe to report as flushed (guarded by mu).
	confirmed pglogrepl.LSN
	// inflight is the byte size of records produced and not yet acknowledged (guarded by mu).
	inflight int64
	// err is the first produce error; once set the stage stops (guarded by mu).
	err error
	// room is signalled (non-blocking) whenever inflight shrinks or err is set.
	room chan struct{}
}

// ackTxn is one source transaction (or heartbeat) whose records are in flight.
type ackTxn struct {
	end         pglogrepl.LSN // LSN to confirm once complete; set by close
	outstanding int           // records produced and not yet acknowledged
	closed      bool          // every record of the transaction has been produced
}

func newTracker(confirmed pglogrepl.LSN) *tracker {
	return &tracker{confirmed: confirmed, room: make(chan struct{}, 1)}
}

// open starts a transaction; its records are added with add before close.
func (t *tracker) open() *ackTxn {
	a := &ackTxn{}
	t.mu.Lock()
	t.queue = append(t.queue, a)
	t.mu.Unlock()
	return a
}

// add counts one record of size bytes about to be produced for a.
func (t *tracker) add(a *ackTxn, size int) {
	t.mu.Lock()
	a.outstanding++
	t.inflight += int64(size)
	t.mu.Unlock()
}

// done is the produce promise: one record of a is acknowledged (or failed).
func (t *tracker) done(a *ackTxn, size int, err error) {
	t.mu.Lock()
	a.outstanding--
	t.inflight -= int64(size)
	if err != nil && t.err == nil {
		t.err = err
	}
	t.advanceLocked()
	t.mu.Unlock()
	select {
	case t.room <- struct{}{}:
	default:
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
		if !a.closed || a.outstanding > 0 {
			break
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

// pending reports the transactions and bytes in flight.
func (t *tracker) pending() (txns int, bytes int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.queue), t.inflight
}

// waitRoom blocks while more than limit bytes are in flight, calling tick every time a
// status interval passes so the replication connection stays alive. It returns the first
// produce error, or ctx's.
func (t *tracker) waitRoom(ctx context.Context, limit int64, tick <-chan time.Time, onTick func() error) error {
	for {
		t.mu.Lock()
		over, err := t.inflight > limit, t.err
		t.mu.Unlock()
		if err != nil {
			return err
		}
		if !over {
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
