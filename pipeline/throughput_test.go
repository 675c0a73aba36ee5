package pipeline

import (
	"strconv"
	"testing"
	"time"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/kafkatest"
)

// TestThroughput measures snapshots/s from change topic to snapshot topic: 20,000 single-root
// transactions are written first, then a stage is started and timed until every snapshot is
// committed.
func TestThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("throughput measurement")
	}
	const txns = 20_000
	env := kafkatest.Start(t)
	cfg := testConfig(t, env, demoModel)
	reg := testRegistry(t, env)
	cdc := newFakeCDC(t, env, cfg, reg, demoTables)
	cdc.txn(change{table: "session.instance", op: avro.OpCreate, key: "2523", after: seedSession()})
	for i := range txns {
		id := i % 2000
		op := avro.OpUpdate
		if i < 2000 {
			op = avro.OpCreate
		}
		inc := seedIncident()
		inc["id"] = strconv.Itoa(id)
		cdc.lsn += 0x100
		cdc.xid++
		cdc.txnAtNoFlush(cdc.lsn, cdc.xid, change{table: "incident.instance", op: op, key: strconv.Itoa(id), after: inc})
	}
	if err := cdc.cl.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	runStage(t, cfg, reg)
	snaps := snapshots(t, env, reg, cfg.Kafka.SnapshotTopic(cfg.Model.Roots[0]), txns)
	took := time.Since(start)
	checkVersions(t, snaps)
	t.Logf("%d snapshots in %v: %.0f snapshots/s", len(snaps), took, float64(len(snaps))/took.Seconds())
}
