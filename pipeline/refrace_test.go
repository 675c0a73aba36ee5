package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/demo"
)

// TestSessionWithIncidentStress stresses the reference watermark: many transactions each create a
// session and an incident pointing at it, while other connections keep committing transactions
// that touch no reference (so coalesced watermarks and heartbeats run all the time) and the CPU
// is busy. Every snapshot of every incident must show its session (sessions are never deleted).
// WALHOOK_REFRACE_N sets the number of incidents (default 600).
func TestSessionWithIncidentStress(t *testing.T) {
	n := 600
	if s := os.Getenv("WALHOOK_REFRACE_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	e := startE2E(t, demo.ModelYAML, demo.SchemaSQL)
	url := e.cfg.Postgres.URL
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// CPU pressure.
	var burn sync.WaitGroup
	for range runtime.NumCPU() {
		burn.Add(1)
		go func() {
			defer burn.Done()
			x := 0
			for ctx.Err() == nil {
				for i := range 1 << 16 {
					x += i
				}
				runtime.Gosched()
			}
			_ = x
		}()
	}
	defer burn.Wait()
	defer cancel()

	conn := func() *pgx.Conn {
		c, err := pgx.Connect(context.Background(), url)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}
	// A base session and incident the noise writers update (no reference change).
	e.exec(`INSERT INTO session.instance (id, uuid, score, status, created_at, updated_at, tenant_id)
		VALUES (1, gen_random_uuid(), 1, 'IN_PROGRESS', now(), now(), 'acme')`)
	e.exec(`INSERT INTO incident.instance (id, name, status, severity, start_time, session_instance_id, created_at, created_by, updated_at, updated_by, tenant_id)
		VALUES (1, 'noise', 'TRIGGERED', 'LOW', now(), 1, now(), 1, now(), 1, 'acme')`)

	var noise sync.WaitGroup
	var noiseErr atomic.Value
	for w := range 2 {
		c := conn()
		noise.Add(1)
		go func() {
			defer noise.Done()
			for i := 0; ctx.Err() == nil; i++ {
				sql := `UPDATE incident.instance SET name = $1 WHERE id = 1`
				if w == 1 && i%3 == 0 {
					sql = `UPDATE session.instance SET score = length($1) WHERE id = 1`
				}
				if _, err := c.Exec(ctx, sql, fmt.Sprint("n", w, i)); err != nil && ctx.Err() == nil {
					noiseErr.Store(err)
					return
				}
			}
		}()
	}

	var writers sync.WaitGroup
	var aligned atomic.Int64
	heartbeats := sync.Map{} // incident id → LSN of the heartbeat emitted just before its commit
	const nw = 4
	for w := range nw {
		c, hb := conn(), conn()
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := w; i < n; i += nw {
				id := strconv.Itoa(1000 + i)
				tx, err := c.Begin(ctx)
				if err != nil {
					t.Errorf("begin: %v", err)
					return
				}
				_, err = tx.Exec(ctx, `INSERT INTO session.instance (id, uuid, score, status, created_at, updated_at, tenant_id)
						VALUES (`+id+`, gen_random_uuid(), 5, 'IN_PROGRESS', now(), now(), 'acme');
					INSERT INTO incident.instance (id, name, status, severity, start_time, session_instance_id, created_at, created_by, updated_at, updated_by, tenant_id)
						VALUES (`+id+`, 'x', 'TRIGGERED', 'LOW', now(), `+id+`, now(), 1, now(), 1, 'acme')`)
				if err != nil {
					t.Errorf("txn %s: %v", id, err)
					return
				}
				// A heartbeat (the stage's own message) written just before the commit record,
				// padded until the record ends on an 8-byte boundary: the commit record then
				// starts exactly at the heartbeat's LSN.
				for k := range 16 {
					var s string
					if err := hb.QueryRow(ctx, `SELECT pg_logical_emit_message(false, 'walhook.heartbeat', repeat('x', $1))::text`, k).Scan(&s); err != nil {
						t.Errorf("heartbeat: %v", err)
						return
					}
					lsn, _ := pglogrepl.ParseLSN(s)
					if lsn%8 == 0 {
						aligned.Add(1)
						heartbeats.Store(id, uint64(lsn))
						break
					}
				}
				if err := tx.Commit(ctx); err != nil {
					t.Errorf("commit %s: %v", id, err)
					return
				}
			}
		}()
	}
	writers.Wait()
	cancel()
	noise.Wait()
	if err, _ := noiseErr.Load().(error); err != nil {
		t.Fatalf("noise: %v", err)
	}
	var target string
	if err := e.db.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&target); err != nil {
		t.Fatalf("pg_current_wal_lsn: %v", err)
	}
	snaps := e.quiescentSnapshots(e.cfg.Kafka.SnapshotTopic(e.cfg.Model.Roots[0]), target, n, 3*time.Minute)
	created, bad := map[string]bool{}, 0
	for _, s := range snaps {
		var p struct {
			Session json.RawMessage `json:"session"`
		}
		if err := json.Unmarshal(s.Payload, &p); err != nil {
			t.Fatalf("payload %s: %v", s.Payload, err)
		}
		if s.Verb == avro.VerbCreated {
			created[s.Key] = true
		}
		if string(p.Session) == "null" || len(p.Session) == 0 {
			bad++
			if bad <= 5 {
				t.Errorf("incident %s v%d (%v, LSN %s): session null", s.Key, s.Version, s.Verb, lsnText(s.CommitLSN))
			}
		}
	}
	same := 0
	for _, s := range snaps {
		if h, ok := heartbeats.Load(s.Key); ok && s.Verb == avro.VerbCreated && h.(uint64) == s.CommitLSN {
			same++
		}
	}
	t.Logf("%d snapshots, %d created, %d with session null; %d aligned heartbeats, %d at exactly the commit LSN",
		len(snaps), len(created), bad, aligned.Load(), same)
	if len(created) < n {
		t.Errorf("%d incidents created, want at least %d", len(created), n)
	}
}
