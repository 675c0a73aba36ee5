//go:build linux

package cdc

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/internal/kafkatest"
)

// maxBigTxnRSS is the resident-memory bound of the stage while it captures a huge transaction.
const maxBigTxnRSS = 256 << 20

// TestChaosHugeTransaction commits one transaction of 1,000,000 row changes (500,000
// incident inserts, 250,000 timeline inserts and, through the demo trigger, 250,000 updates
// of their incidents) while the stage runs in a process of its own, checks that every one of
// them reaches Kafka, and that the
// process's peak resident set (rusage) stayed under 256 MiB. PostgreSQL streams the
// transaction in chunks (pgoutput v2 streaming) and the stage spills it to disk past its
// memory limit, then produces it under the in-flight bound.
//
// The process runs with GOMEMLIMIT=200MiB, as the production manifests set GOMEMLIMIT: the
// live heap peaks near 110 MiB here (half a million distinct roots, each with a TxnEnd pending
// until the commit, plus the in-flight bound), and without a limit the garbage collector lets
// the heap double before collecting (peak RSS ~295 MiB measured). WALHOOK_BIGTXN_GOMEMLIMIT
// overrides it ("off" runs without one).
//
// It takes minutes, so it runs only with WALHOOK_CHAOS=1 (`make chaos`) or
// WALHOOK_BIGTXN_ROWS=n (a smaller transaction for a quick check).
func TestChaosHugeTransaction(t *testing.T) {
	n := 0
	if os.Getenv("WALHOOK_CHAOS") != "" {
		n = 1_000_000
	}
	if s := os.Getenv("WALHOOK_BIGTXN_ROWS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	if n <= 0 {
		t.Skip("set WALHOOK_CHAOS=1 (make chaos) or WALHOOK_BIGTXN_ROWS=n")
	}
	e := newEnv(t, "")
	e.cfg.CDC.MemoryLimitBytes = 0 // the default (64 MiB)
	e.cfg.CDC.StatusInterval = time.Second
	limit := "GOMEMLIMIT=200MiB"
	if l := os.Getenv("WALHOOK_BIGTXN_GOMEMLIMIT"); l == "off" {
		limit = "GOMEMLIMIT=off"
	} else if l != "" {
		limit = "GOMEMLIMIT=" + l
	}
	t.Logf("stage runs with %s", limit)
	c := e.startChild("big", limit)
	c.waitReady(2 * time.Minute)
	e.exec(`INSERT INTO session.instance (id, status, tenant_id) VALUES (1, 'COMPLETED', 't1')`)

	// Each incident is updated at most once: a row updated again and again in one
	// transaction grows a version chain every update walks, which makes the insert quadratic.
	roots, subs := n/2, n/4
	begin := time.Now()
	e.exec(fmt.Sprintf(`BEGIN;
		INSERT INTO incident.instance (id, description, status, severity, start_time, session_instance_id, tenant_id)
		SELECT g, 'incident ' || g || ' of one huge transaction', 'TRIGGERED', 'LOW', now(), 1, 't1' FROM generate_series(1, %d) g;
		INSERT INTO incident.timeline (incident_instance_id, action, description, tenant_id)
		SELECT g, 'COMMENTED', 'row ' || g || ' of one huge transaction, padded to about 150 bytes', 't1'
		FROM generate_series(1, %d) g;
		COMMIT;`, roots, subs))
	target := e.currentLSN()
	t.Logf("committed %d row changes in one transaction in %v", roots+2*subs, time.Since(begin).Round(time.Millisecond))

	kafkatest.Eventually(t, 30*time.Minute, func() error {
		if done, err := c.exited(); done {
			t.Fatalf("stage exited (%v):\n%s", err, c.logTail())
		}
		if got := e.confirmedFlush(); got < target {
			return fmt.Errorf("confirmed_flush_lsn %X < %X", got, target)
		}
		return nil
	})
	t.Logf("confirmed %v after the commit", time.Since(begin).Round(time.Millisecond))
	if err := c.term(time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, c.logTail())
	}
	rss := c.maxRSS()
	t.Logf("peak RSS of the stage: %.1f MiB", float64(rss)/(1<<20))

	topic := e.cfg.Kafka.ChangeTopic(e.cfg.Model.Roots[0])
	counts := countChanges(t, e, topic, 2*n+2000)
	if counts["incident.instance/create"] != roots || counts["incident.timeline/create"] != subs || counts["incident.instance/update"] != subs {
		t.Fatalf("change records by table/op: %v; want %d incident creates, %d timeline creates and %d incident updates",
			counts, roots, subs, subs)
	}
	if rss >= maxBigTxnRSS {
		t.Fatalf("peak RSS %.1f MiB, want < %d MiB", float64(rss)/(1<<20), maxBigTxnRSS>>20)
	}
}

// countChanges reads topic to its end and counts change records by table/op from their
// headers (no Avro decoding: a million records decode slowly).
func countChanges(t *testing.T, e *env, topic string, limit int) map[string]int {
	t.Helper()
	cl := kafkatest.Client(t, e.kafk, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(64<<20))
	ends, err := adminEnds(cl, topic)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	deadline := time.Now().Add(10 * time.Minute)
	read := 0
	for len(ends) > 0 && read <= limit {
		if time.Now().After(deadline) {
			t.Fatalf("reading %s: partitions %v not read to the end after %d records", topic, ends, read)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			read++
			if header(r, "walhook-kind") == "change" {
				counts[header(r, "walhook-table")+"/"+header(r, "walhook-op")]++
			}
			if end, ok := ends[r.Partition]; ok && r.Offset+1 >= end {
				delete(ends, r.Partition)
			}
		})
	}
	return counts
}

// adminEnds returns the end offset of every non-empty partition of topic.
func adminEnds(cl *kgo.Client, topic string) (map[int32]int64, error) {
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			out[o.Partition] = o.Offset
		}
	})
	return out, nil
}
