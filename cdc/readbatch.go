package cdc

import (
	"bufio"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// The replication connection's reader batches. The walsender flushes its socket after every
// message it decodes, so a reader that keeps up reads one small message per read(2), and
// pays a read, an EAGAIN, a netpoll park and a wake-up per row change: on a busy machine
// that is most of the stage's CPU, taken from the walsender it is waiting for. Instead the
// connection reads through a large buffer, and after a short read (less than replBatchMin
// bytes) the next read waits, so the following read(2) finds a batch. The bytes of a read
// are handed on at once; only the read after a short one is delayed, so the added latency is
// at most the wait per batch. Deadlines (status interval, shutdown) still interrupt the read
// itself, late by at most the wait.
//
// The wait adapts to the walsender's pace: it doubles (up to replBatchWaitMax) while reads
// after a wait are still short, and halves (down to replBatchWaitMin) when a read brings more
// than twice replBatchMin. A fixed 1 ms wait read ~15 KiB per wake-up at the walsender's full
// speed on the benchmark machine, so the stage still woke a thousand times a second, with
// the scheduler and epoll work of each wake-up; at 4 ms a read carries 60 KiB or more, and
// the stage's context switches fell by 27-48 % and its CPU per row by 14-30 % in the 1M-row
// benchmark (docs/benchmarks.md, "CPU per row").
const (
	replReadBuffer   = 512 << 10
	replBatchMin     = 64 << 10
	replBatchWaitMin = time.Millisecond
	replBatchWaitMax = 4 * time.Millisecond
)

// batchedFrontend is the pgconn BuildFrontend of the replication connection.
func batchedFrontend(r io.Reader, w io.Writer) *pgproto3.Frontend {
	return pgproto3.NewFrontend(bufio.NewReaderSize(&batchingReader{r: r, wait: replBatchWaitMin}, replReadBuffer), w)
}

// batchingReader delays the read that follows a short read; see above.
type batchingReader struct {
	r     io.Reader
	short bool          // the previous read returned less than replBatchMin bytes
	wait  time.Duration // the delay before the read that follows a short read
}

func (b *batchingReader) Read(p []byte) (int, error) {
	waited := b.short
	if waited {
		time.Sleep(b.wait)
	}
	n, err := b.r.Read(p)
	if err != nil || len(p) < replBatchMin {
		b.short = false
		return n, err
	}
	b.short = n < replBatchMin
	switch {
	case b.short && waited:
		b.wait = min(2*b.wait, replBatchWaitMax)
	case n > 2*replBatchMin:
		b.wait = max(b.wait/2, replBatchWaitMin)
	}
	return n, err
}
