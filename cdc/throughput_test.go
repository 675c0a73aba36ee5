package cdc

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/walhook/walhook/internal/kafkatest"
)

// TestThroughput measures catch-up speed: the stage starts behind a backlog of
// WALHOOK_CDC_BENCH_ROWS timeline inserts in 1,000-row transactions (each also updates its
// incident through the demo trigger: two changes per row) and the clock stops when the slot's
// confirmed_flush_lsn reaches the end of the backlog. Opt-in: set WALHOOK_CDC_BENCH_ROWS.
func TestThroughput(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("WALHOOK_CDC_BENCH_ROWS"))
	if n == 0 {
		t.Skip("set WALHOOK_CDC_BENCH_ROWS (e.g. 200000) to measure")
	}
	e := newEnv(t, "")
	e.exec(`INSERT INTO session.instance (id, status, tenant_id) VALUES (1, 'COMPLETED', 't1');
		INSERT INTO incident.instance (id, status, severity, start_time, session_instance_id, tenant_id)
		SELECT g, 'TRIGGERED', 'LOW', now(), 1, 't1' FROM generate_series(1, 1000) g`)
	r := e.start("a")
	e.waitActive()
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n/1000; i++ {
		e.exec(`INSERT INTO incident.timeline (incident_instance_id, action, description, tenant_id)
			SELECT 1 + (g * 7919) % 1000, 'COMMENTED', 'row ' || g || ' of a benchmark transaction, padded to about 150 bytes', 't1'
			FROM generate_series(1, 1000) g`)
	}
	target := e.currentLSN()
	start := time.Now()
	r = e.start("b")
	kafkatest.Eventually(t, 10*time.Minute, func() error {
		if c := e.confirmedFlush(); c < target {
			return fmt.Errorf("confirmed %X < %X", c, target)
		}
		return nil
	})
	el := time.Since(start)
	t.Logf("%d source rows (%d changes) in %v: %.0f changes/s", n, 2*n, el, float64(2*n)/el.Seconds())
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}
