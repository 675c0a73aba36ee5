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
// bytes) the next read waits replBatchWait, so the following read(2) finds a batch. The
// bytes of a read are handed on at once; only the read after a short one is delayed, so the
// added latency is at most replBatchWait per batch. Deadlines (status interval, shutdown)
// still interrupt the read itself, late by at most replBatchWait.
const (
	replReadBuffer = 512 << 10
	replBatchMin   = 64 << 10
	replBatchWait  = time.Millisecond
)

// batchedFrontend is the pgconn BuildFrontend of the replication connection.
func batchedFrontend(r io.Reader, w io.Writer) *pgproto3.Frontend {
	return pgproto3.NewFrontend(bufio.NewReaderSize(&batchingReader{r: r}, replReadBuffer), w)
}

// batchingReader delays the read that follows a short read; see above.
type batchingReader struct {
	r     io.Reader
	short bool // the previous read returned less than replBatchMin bytes
}

func (b *batchingReader) Read(p []byte) (int, error) {
	if b.short {
		time.Sleep(replBatchWait)
	}
	n, err := b.r.Read(p)
	b.short = err == nil && n < replBatchMin && len(p) >= replBatchMin
	return n, err
}
