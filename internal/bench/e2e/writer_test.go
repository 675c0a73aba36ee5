package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// commitTimeSQL updates one incident and stores, in the row, the statement's clock_timestamp() in
// Unix microseconds: the receiver subtracts it from the receipt time. The statement runs in its
// own (autocommit) transaction, so the commit follows it within microseconds (fsync is off in the
// embedded cluster).
const commitTimeSQL = `UPDATE incident.instance
SET resolution_notes = (extract(epoch FROM clock_timestamp()) * 1000000)::bigint::text, updated_at = clock_timestamp()
WHERE id = $1 RETURNING resolution_notes`

// writer commits transactions at a fixed rate over several connections and keeps each one's
// commit time, so the transactions of a window can be counted once the writer has stopped.
type writer struct {
	conns []*pgx.Conn
	ids   []int64

	behind  atomic.Int64 // transactions dropped by the pacer because every connection was busy
	errs    atomic.Int64
	lastErr atomic.Value // error

	mu      sync.Mutex // guards commits
	commits []commit
}

// commit is one committed transaction: the commit time it wrote (Unix µs) and the writer's round
// trip of its statement, commit included.
type commit struct {
	us  int64
	rtt time.Duration
}

func newWriter(ctx context.Context, url string, conns int, ids []int64) (*writer, error) {
	w := &writer{ids: ids}
	for range conns {
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("writer connection: %w", err)
		}
		w.conns = append(w.conns, c)
	}
	return w, nil
}

func (w *writer) close() {
	for _, c := range w.conns {
		_ = c.Close(context.Background())
	}
}

// run issues rate transactions per second until ctx is done. Every millisecond the pacer hands
// out the transactions due by then; a transaction that finds every connection busy is dropped
// and counted in behind, so a slow database shows as a lower achieved rate, not as a burst.
func (w *writer) run(ctx context.Context, rate int) {
	jobs := make(chan struct{}, len(w.conns))
	var wg sync.WaitGroup
	for _, c := range w.conns {
		wg.Go(func() { w.work(ctx, c, jobs) })
	}
	defer wg.Wait()
	defer close(jobs)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start, issued := time.Now(), int64(0)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			due := int64(now.Sub(start).Seconds() * float64(rate))
			for ; issued < due; issued++ {
				select {
				case jobs <- struct{}{}:
				default:
					w.behind.Add(1)
				}
			}
		}
	}
}

// work runs the jobs on c until jobs is closed. A statement is not cancelled with ctx: a
// transaction that committed must be counted, or the receiver would see more than was written.
func (w *writer) work(ctx context.Context, c *pgx.Conn, jobs <-chan struct{}) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Hour)
	defer cancel()
	for range jobs {
		id := w.ids[rand.IntN(len(w.ids))]
		start := time.Now()
		var notes string
		if err := c.QueryRow(ctx, commitTimeSQL, id).Scan(&notes); err != nil {
			w.errs.Add(1)
			w.lastErr.Store(err)
			continue
		}
		rtt := time.Since(start)
		us, _ := strconv.ParseInt(notes, 10, 64)
		w.mu.Lock()
		w.commits = append(w.commits, commit{us, rtt})
		w.mu.Unlock()
	}
}

// window returns the number of transactions committed in [from, to) and their round trips, sorted.
func (w *writer) window(from, to int64) (int64, []time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var rtts []time.Duration
	for _, c := range w.commits {
		if c.us >= from && c.us < to {
			rtts = append(rtts, c.rtt)
		}
	}
	slices.Sort(rtts)
	return int64(len(rtts)), rtts
}
