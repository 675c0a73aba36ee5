package cdc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// Prefixes of the snapshot markers (pg_logical_emit_message, transactional). The content of
// the watermarks is the chunk id; of a request, the schema-qualified table.
const (
	snapshotPrefix    = "walhook.snapshot."
	snapLowPrefix     = "walhook.snapshot.low"
	snapHighPrefix    = "walhook.snapshot.high"
	snapRequestPrefix = "walhook.snapshot.request"
)

// defaultChunkRows is cdc.snapshot_chunk_rows when unset.
const defaultChunkRows = 10000

// snapshotter takes the initial snapshot and on-demand re-snapshots of the model's tables
// while the stream runs, with watermarks (DBLog): per chunk a low watermark, a SELECT of the
// next rows by primary key, a high watermark; the stream drops from the chunk every row a
// change between the two watermarks touched and writes the rest as reads at the high one.
// See docs/cdc.md "Initial snapshot".
//
// Goroutines: the snapshot loop (loop) owns its PostgreSQL connection, reads chunks and
// records progress; the stream goroutine owns the open windows (wins, open) and produces the
// reads, in WAL order. mu guards progress and chunks. Lock order: snapshotter.mu, then
// tracker.mu (progress records are produced under mu, so the state topic holds progress in
// the order it changed).
type snapshotter struct {
	s         *Stage
	cl        *kgo.Client
	tr        *tracker
	runID     string
	chunkRows int
	tables    []string // snapshot units in snapshot order (snapshotUnits: roots, then reference tables)
	met       *snapMetrics
	bar       *progressBar

	mu       sync.Mutex
	progress map[string]*snapProgress // guarded by mu
	chunks   map[string]*chunk        // handed to the stream, by id (guarded by mu)
	wake     chan struct{}            // capacity 1: a request arrived

	// Stream goroutine only.
	wins    map[string]*window // open windows by chunk id (low watermark seen, high not yet)
	open    int                // len(wins), read by every row change
	commits *commitLog         // the transactions decoded most recently
}

// newSnapshotter loads the recorded progress; the initial snapshot was requested in
// prepareSlot when the slot was created.
func (s *Stage) newSnapshotter(ctx context.Context, adm *kadm.Client, cl *kgo.Client, tr *tracker) (*snapshotter, error) {
	id := make([]byte, 6)
	_, _ = rand.Read(id)
	met, err := newSnapMetrics(s.reg, s.cfg.Postgres.Slot)
	if err != nil {
		return nil, fmt.Errorf("cdc: register snapshot metrics: %w", err)
	}
	sn := &snapshotter{
		s: s, cl: cl, tr: tr, runID: hex.EncodeToString(id), chunkRows: s.cfg.CDC.SnapshotChunkRows,
		tables: snapshotUnits(&s.cfg.Model), met: met, bar: newProgressBar(),
		chunks: map[string]*chunk{}, wake: make(chan struct{}, 1), wins: map[string]*window{}, commits: newCommitLog(),
	}
	if sn.chunkRows <= 0 {
		sn.chunkRows = defaultChunkRows
	}
	if sn.progress, err = s.loadSnapshotProgress(ctx, adm); err != nil {
		return nil, err
	}
	sn.met.remaining.Set(float64(sn.remaining()))
	return sn, nil
}

// run runs stream (the replication loop) and the snapshot loop beside it until either
// stops; it returns after both have.
func (sn *snapshotter) run(ctx context.Context, stream func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	loopErr := make(chan error, 1)
	go func() {
		err := sn.loop(ctx)
		if err != nil {
			sn.s.log.Error("snapshot failed; the stage stops and resumes it from the last finished chunk on restart", zap.Error(err))
			cancel()
		}
		loopErr <- err
	}()
	err := stream(ctx)
	cancel()
	if lerr := <-loopErr; lerr != nil && !errors.Is(lerr, context.Canceled) {
		err = errors.Join(err, lerr)
	}
	return err
}

// loop snapshots the requested tables one after the other, chunk by chunk, and then waits
// for requests.
func (sn *snapshotter) loop(ctx context.Context) error {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	for {
		table := sn.next()
		sn.met.remaining.Set(float64(sn.remaining()))
		if table == "" {
			select {
			case <-ctx.Done():
				return nil
			case <-sn.wake:
				continue
			}
		}
		if conn == nil {
			c, err := sn.connect(ctx)
			if err != nil {
				return err
			}
			conn = c
		}
		if err := sn.snapshotTable(ctx, conn, table); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// connect opens the snapshot connection with the replication connection's session settings,
// so a SELECT's text cells are byte for byte what pgoutput sends.
func (sn *snapshotter) connect(ctx context.Context) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(sn.s.cfg.Postgres.URL)
	if err != nil {
		return nil, fmt.Errorf("cdc: postgres.url: %w", err)
	}
	for k, v := range map[string]string{
		"TimeZone": "UTC", "DateStyle": "ISO", "IntervalStyle": "iso_8601", "extra_float_digits": "3",
		"bytea_output": "hex", "application_name": "walhook-cdc-snapshot",
	} {
		cc.RuntimeParams[k] = v
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("cdc: snapshot connection: %w; check postgres.url / WALHOOK_PG_URL", err)
	}
	return conn, nil
}

// next returns the first table in snapshot order whose snapshot is requested and not done.
func (sn *snapshotter) next() string {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	for _, t := range sn.tables {
		if p := sn.progress[t]; p != nil && !p.Done {
			return t
		}
	}
	return ""
}

func (sn *snapshotter) remaining() int {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	n := 0
	for _, p := range sn.progress {
		if !p.Done {
			n++
		}
	}
	return n
}

// snapshotTable reads a snapshot unit (a root with its subordinates, or a reference table)
// chunk by chunk from its recorded progress until it is done or a new request restarts it.
func (sn *snapshotter) snapshotTable(ctx context.Context, conn *pgx.Conn, table string) error {
	plan, err := sn.loadPlan(ctx, conn, table)
	if err != nil {
		return err
	}
	meta := plan.unit
	sn.mu.Lock()
	p := *sn.progress[table]
	sn.mu.Unlock()
	log := sn.s.log.With(zap.String("table", table))
	if p.LastKey == nil {
		log.Info("snapshot of table started", zap.Int64("estimated_rows", meta.estimate), zap.Int("chunk_rows", sn.chunkRows))
	} else {
		log.Info("snapshot of table resumed after the last finished chunk", zap.Strings("after_key", p.LastKey),
			zap.Int64("rows_done", p.Rows), zap.Int64("chunks_done", p.Chunks))
	}
	if p.UpperKey == nil && !p.Done {
		if p.UpperKey, err = upperKey(ctx, conn, meta); err != nil {
			return err
		}
	}
	pr := sn.bar.start(table, meta.estimate, p.Rows)
	logTick := time.NewTicker(10 * time.Second)
	defer logTick.Stop()
	dropped := 0 // rows a streamed change touched inside their chunk's window (the stream has them)
	rereads := 0 // consecutive reads of the current chunk that were retried
	for {
		res, err := sn.chunk(ctx, conn, plan, p)
		if err != nil {
			return err
		}
		if res.retry != "" {
			sn.met.rereads.WithLabelValues(res.retryKind).Inc()
			rereads++
			// A stale snapshot is common under concurrent writes and passes in milliseconds,
			// unless a transaction stays committed-but-running (synchronous replication
			// waiting for its standby): back off, and log it once it repeats.
			lvl := zap.DebugLevel
			if rereads == 1 && res.retryKind != "stale_snapshot" || rereads == 10 || rereads%100 == 0 {
				lvl = zap.InfoLevel
			}
			log.Log(lvl, "snapshot chunk read again", zap.String("reason", res.retry), zap.Int("times", rereads))
			if res.retryKind == "stale_snapshot" {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Duration(min(rereads, 50)) * 2 * time.Millisecond):
				}
			}
			if plan, err = sn.loadPlan(ctx, conn, table); err != nil {
				return err
			}
			meta = plan.unit
			continue
		}
		if err := sn.waitConfirmed(ctx, res.commitLSN); err != nil {
			return fmt.Errorf("cdc: snapshot of %s, chunk after %v (high watermark %s): %w", table, p.LastKey, res.commitLSN, err)
		}
		rereads = 0
		next, ok, err := sn.finishChunk(ctx, p, res)
		if err != nil || !ok {
			return err // !ok: a new request restarted the table
		}
		p = next
		dropped += res.dropped
		for tbl, n := range res.emitted {
			sn.met.rows.WithLabelValues(tbl).Add(float64(n))
		}
		pr.update(p.Rows)
		select {
		case <-logTick.C:
			log.Info("snapshot progress", zap.Int64("rows_done", p.Rows), zap.Int64("estimated_rows", meta.estimate),
				zap.Int64("chunks_done", p.Chunks), zap.Float64("rows_per_second", pr.rate()))
		default:
		}
		if p.Done {
			pr.finish()
			log.Info("snapshot of table finished", zap.Int64("rows", p.Rows), zap.Int64("chunks", p.Chunks),
				zap.Int("left_to_the_stream", dropped), zap.Duration("took", time.Since(pr.began)))
			return nil
		}
	}
}

// waitConfirmed waits until the tracker confirmed past lsn (the high watermark's commit LSN):
// Kafka then acknowledged the chunk's reads, its transaction ends and everything before.
func (sn *snapshotter) waitConfirmed(ctx context.Context, lsn pglogrepl.LSN) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		c, err := sn.tr.state()
		if err != nil {
			return fmt.Errorf("produce to Kafka failed: %w", err)
		}
		if c > lsn {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
