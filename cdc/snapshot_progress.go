package cdc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/walhook/walhook/config"
)

// snapProgress is the durable progress of one table's snapshot, in the compacted state topic
// under snapshotKey. It moves only after Kafka acknowledged the chunk's records (and the slot
// confirmed past its high watermark), so a restart resumes after the last finished chunk.
type snapProgress struct {
	Slot  string `json:"slot"`
	Table string `json:"table"`
	// Gen identifies the request (UnixNano when it was made); a newer request restarts the
	// table from its first row.
	Gen     int64    `json:"gen"`
	Done    bool     `json:"done"`
	LastKey []string `json:"last_key,omitempty"` // primary key (text) of the last row of the last finished chunk
	// UpperKey is the largest primary key when the table's snapshot began (its first chunk):
	// chunks read no row above it. A row inserted later reaches Kafka through the stream, and a
	// busy table whose writers insert faster than chunks read would otherwise never finish.
	// Empty (not nil) when the table was empty then.
	UpperKey  []string  `json:"upper_key,omitempty"`
	Rows      int64     `json:"rows"`
	Chunks    int64     `json:"chunks"`
	Requested time.Time `json:"requested_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// snapshotKey is the state topic key of a table's progress.
func snapshotKey(slot, table string) []byte { return []byte("snapshot\x00" + slot + "\x00" + table) }

func (s *Stage) loadSnapshotProgress(ctx context.Context, adm *kadm.Client) (map[string]*snapProgress, error) {
	out := map[string]*snapProgress{}
	prefix := string(snapshotKey(s.cfg.Postgres.Slot, ""))
	var bad error
	err := s.readCompacted(ctx, adm, s.stateTopic(), func(k, v []byte) {
		t, ok := strings.CutPrefix(string(k), prefix)
		if !ok {
			return
		}
		if v == nil {
			delete(out, t)
			return
		}
		var p snapProgress
		if err := json.Unmarshal(v, &p); err != nil {
			bad = fmt.Errorf("cdc: snapshot progress of %s in %s is not valid JSON: %w; delete it (a tombstone for its key) "+
				"and request a resnapshot", t, s.stateTopic(), err)
			return
		}
		out[t] = &p
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return nil, fmt.Errorf("cdc: load snapshot progress: %w", err)
	}
	units := snapshotUnits(&s.cfg.Model)
	for t, p := range out {
		if slices.Contains(units, t) {
			continue
		}
		delete(out, t) // a table no longer in the model, or a subordinate (read with its roots)
		if p.Done {
			continue
		}
		// Unfinished progress of a subordinate (recorded before snapshots became root-atomic):
		// its roots are read again, with their subordinates.
		for _, u := range unitsOf(&s.cfg.Model, t) {
			if r := out[u]; r == nil || r.Done {
				out[u] = &snapProgress{Slot: p.Slot, Table: u, Gen: p.Gen, Requested: p.Requested}
			}
		}
	}
	return out, nil
}

func (s *Stage) progressRecord(p *snapProgress) *kgo.Record {
	p.UpdatedAt = time.Now().UTC()
	v, _ := json.Marshal(p)
	return &kgo.Record{Topic: s.stateTopic(), Key: snapshotKey(p.Slot, p.Table), Value: v}
}

// requestInitialSnapshot records, before a new slot is created, that every model table must
// be snapshotted: a crash between the slot's creation and the first chunk still snapshots.
func (s *Stage) requestInitialSnapshot(ctx context.Context, cl *kgo.Client) error {
	now := time.Now().UTC()
	var recs []*kgo.Record
	for _, t := range snapshotUnits(&s.cfg.Model) {
		recs = append(recs, s.progressRecord(&snapProgress{Slot: s.cfg.Postgres.Slot, Table: t, Gen: now.UnixNano(), Requested: now}))
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("cdc: record the initial snapshot request in %s: %w", s.stateTopic(), err)
	}
	return nil
}

// finishChunk records a finished chunk; false when a newer request for the table arrived
// meanwhile (the table starts over and this chunk's progress is dropped).
func (sn *snapshotter) finishChunk(ctx context.Context, p snapProgress, res chunkResult) (snapProgress, bool, error) {
	p.Chunks++
	p.Rows += int64(res.unitRows)
	p.LastKey, p.Done = res.lastKey, res.lastKey == nil
	sn.mu.Lock()
	cur := sn.progress[p.Table]
	if cur == nil || cur.Gen != p.Gen {
		sn.mu.Unlock()
		return p, false, nil
	}
	*cur = p
	rec := sn.s.progressRecord(cur)
	// Produced under mu: a request record produced after this one wins in the compacted topic.
	var err error
	done := make(chan struct{})
	sn.cl.Produce(ctx, rec, func(_ *kgo.Record, e error) { err = e; close(done) })
	sn.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return p, false, ctx.Err()
	}
	if err != nil {
		return p, false, fmt.Errorf("cdc: record snapshot progress of %s (chunk %d, key %v) in %s: %w",
			p.Table, p.Chunks, p.LastKey, sn.s.stateTopic(), err)
	}
	return p, true, nil
}

// request handles a resnapshot request read from the slot (stream goroutine): the table
// starts over; the new progress is part of the request's transaction, so the request is
// confirmed to PostgreSQL only once it is durable. A subordinate table is read again through
// its roots (each root's chunks re-read all its subordinates).
func (sn *snapshotter) request(ctx context.Context, st *streamer, t *txn, table string) error {
	units := unitsOf(&sn.s.cfg.Model, table)
	if len(units) == 0 {
		sn.s.log.Warn("resnapshot request for a table that is not in the model ignored",
			zap.String("table", table), zap.Strings("snapshot_tables", sn.tables))
		return nil
	}
	for _, u := range units {
		if u != table {
			sn.s.log.Info("resnapshot of a subordinate table reads its roots again", zap.String("table", table), zap.String("root", u))
		}
		sn.requestUnit(ctx, st, t, u)
	}
	return nil
}

func (sn *snapshotter) requestUnit(ctx context.Context, st *streamer, t *txn, table string) {
	now := time.Now().UTC()
	sn.mu.Lock()
	gen := now.UnixNano()
	if old := sn.progress[table]; old != nil && old.Gen >= gen {
		gen = old.Gen + 1
	}
	p := &snapProgress{Slot: sn.s.cfg.Postgres.Slot, Table: table, Gen: gen, Requested: now}
	sn.progress[table] = p
	st.produce(ctx, t, sn.s.progressRecord(p))
	sn.mu.Unlock()
	sn.s.log.Info("resnapshot requested", zap.String("table", table), zap.Stringer("lsn", t.commitLSN))
	select {
	case sn.wake <- struct{}{}:
	default:
	}
}

// RequestResnapshot asks the walhook cdc running on cfg's slot (now or at its next start) to
// capture tables again, as reads, while streaming continues. The request travels through the
// slot (a transactional pg_logical_emit_message), so it is ordered with the changes and lost
// by nobody. It returns the LSN of each request.
func RequestResnapshot(ctx context.Context, cfg *config.Config, tables ...string) ([]string, error) {
	model := cfg.Model.Tables()
	var errs []error
	for _, t := range tables {
		if !slices.Contains(model, t) {
			errs = append(errs, fmt.Errorf("cdc: table %q is not in the model (tables: %s): use its schema-qualified name", t, strings.Join(model, ", ")))
		}
	}
	if len(tables) == 0 {
		errs = append(errs, errors.New("cdc: no table to resnapshot: name one with --table, or use --all"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, cfg.Postgres.URL)
	if err != nil {
		return nil, fmt.Errorf("cdc: connect to PostgreSQL: %w; check postgres.url / WALHOOK_PG_URL", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, cfg.Postgres.Slot).Scan(&exists); err != nil {
		return nil, fmt.Errorf("cdc: look up slot %s: %w", cfg.Postgres.Slot, err)
	}
	if !exists {
		return nil, fmt.Errorf("cdc: replication slot %s does not exist, so no walhook cdc would read the request: "+
			"start `walhook cdc` (a new slot takes a full initial snapshot by itself)", cfg.Postgres.Slot)
	}
	var lsns []string
	for _, t := range tables {
		var lsn string
		if err := conn.QueryRow(ctx, `SELECT pg_logical_emit_message(true, '`+snapRequestPrefix+`', $1)::text`, t).Scan(&lsn); err != nil {
			return lsns, fmt.Errorf("cdc: write the resnapshot request of %s: %w; the user needs EXECUTE on pg_logical_emit_message", t, err)
		}
		lsns = append(lsns, lsn)
	}
	return lsns, nil
}

// snapMetrics are the snapshot's metrics.
type snapMetrics struct {
	rows      *prometheus.CounterVec
	remaining prometheus.Gauge
	rereads   *prometheus.CounterVec
}

func newSnapMetrics(reg prometheus.Registerer, slot string) (*snapMetrics, error) {
	labels := prometheus.Labels{"slot": slot}
	rows := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "walhook_cdc_snapshot_rows_total", ConstLabels: labels,
		Help: "Rows written as reads by the initial snapshot and resnapshots, by table.",
	}, []string{"table"})
	remaining := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "walhook_cdc_snapshot_remaining_tables", ConstLabels: labels,
		Help: "Tables whose requested snapshot is not finished yet.",
	})
	rereads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "walhook_cdc_snapshot_chunk_rereads_total", ConstLabels: labels,
		Help: "Snapshot chunks read again, by reason: stale_snapshot (the read snapshot missed a transaction committed before the low watermark), not_handed_over, no_key, columns_changed, truncated (a TRUNCATE of a chunk table inside its window).",
	}, []string{"reason"})
	m := &snapMetrics{rows: rows, remaining: remaining, rereads: rereads}
	var errs []error
	for i, c := range []prometheus.Collector{rows, remaining, rereads} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				errs = append(errs, err)
				continue
			}
			switch i {
			case 0:
				m.rows = are.ExistingCollector.(*prometheus.CounterVec)
			case 1:
				m.remaining = are.ExistingCollector.(prometheus.Gauge)
			default:
				m.rereads = are.ExistingCollector.(*prometheus.CounterVec)
			}
		}
	}
	return m, errors.Join(errs...)
}

// progressBar draws one redrawn stderr line per table while stderr is a terminal; otherwise
// it only keeps the numbers for the logs.
type progressBar struct {
	w io.Writer // nil: not a terminal
}

func newProgressBar() *progressBar {
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		return &progressBar{w: os.Stderr}
	}
	return &progressBar{}
}

type tableProgress struct {
	w              io.Writer
	table          string
	estimate       int64
	began, drawn   time.Time
	startRows, now int64
}

func (b *progressBar) start(table string, estimate, done int64) *tableProgress {
	p := &tableProgress{w: b.w, table: table, estimate: estimate, began: time.Now(), startRows: done, now: done}
	p.draw(true)
	return p
}

func (p *tableProgress) update(rows int64) {
	p.now = rows
	p.draw(false)
}

// rate is rows per second since the table (re)started in this run.
func (p *tableProgress) rate() float64 {
	s := time.Since(p.began).Seconds()
	if s <= 0 {
		return 0
	}
	return float64(p.now-p.startRows) / s
}

func (p *tableProgress) draw(force bool) {
	if p.w == nil || (!force && time.Since(p.drawn) < 200*time.Millisecond) {
		return
	}
	p.drawn = time.Now()
	total := "?"
	pct := ""
	if p.estimate > 0 {
		total = fmt.Sprint(p.estimate)
		pct = fmt.Sprintf(" (%d%%)", min(100, p.now*100/p.estimate))
	}
	fmt.Fprintf(p.w, "\r\x1b[Ksnapshot %s: %d/%s rows%s, %.0f rows/s", p.table, p.now, total, pct, p.rate())
}

func (p *tableProgress) finish() {
	if p.w == nil {
		return
	}
	p.draw(true)
	fmt.Fprintln(p.w, " — done")
}
