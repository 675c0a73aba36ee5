package cdc

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/walhook/walhook/avro"
)

// TestWatermarkFollowsIncidentOnlyTransaction: with heartbeats an hour apart, a transaction
// that touches no reference table still gets a watermark at or above its commit LSN on every
// partition of the reference topic within a second (cdc.watermark_interval), so bubble-up
// does not hold its snapshot until the next heartbeat.
func TestWatermarkFollowsIncidentOnlyTransaction(t *testing.T) {
	e := newEnv(t, "")
	e.cfg.CDC.HeartbeatInterval = time.Hour
	e.seed(2, 2, 1)
	r := e.start("a")
	e.waitActive()

	refTopic := e.cfg.Kafka.ReferenceTopic("session.instance")
	c := e.consume(e.cfg.Kafka.ChangeTopic(e.cfg.Model.Roots[0]), refTopic)
	c.until(30*time.Second, atLeast(2, "incident reads", func(rs []rec) int { return len(reads(rs, "incident.instance")) }))

	e.exec(`INSERT INTO incident.instance (id, name, status, severity, start_time, session_instance_id, tenant_id)
		VALUES (900, 'only', 'TRIGGERED', 'LOW', now(), 1, 't1')`)
	committed := time.Now()
	var lsn uint64
	var reached time.Time
	c.until(30*time.Second, func(rs []rec) error {
		if lsn == 0 {
			for _, g := range changes(rs, "incident.instance") {
				if g.change.Op == avro.OpCreate && val(g.change.After, "id") == "900" {
					lsn = g.change.CommitLSN
				}
			}
			if lsn == 0 {
				return fmt.Errorf("no create of incident 900 yet")
			}
		}
		marks := map[int32]uint64{}
		for _, g := range rs {
			if g.r.Topic != refTopic || g.kind != "watermark" {
				continue
			}
			_, body, err := c.reg.Resolve(context.Background(), g.r.Value)
			if err != nil {
				return err
			}
			wm, err := avro.DecodeWatermark(body)
			if err != nil {
				return err
			}
			marks[g.r.Partition] = max(marks[g.r.Partition], wm.CommitLSN)
		}
		for p := int32(0); p < e.cfg.Kafka.Partitions; p++ {
			if marks[p] < lsn {
				return fmt.Errorf("partition %d watermark %X < incident commit LSN %X", p, marks[p], lsn)
			}
		}
		reached = time.Now()
		return nil
	})
	if d := reached.Sub(committed); d > time.Second {
		t.Fatalf("reference watermarks reached the incident's commit LSN %s after its commit; want < 1s", d)
	}
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
