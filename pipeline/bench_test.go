package pipeline

import (
	"strconv"
	"testing"
	"time"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/kafkatest"
)

// BenchmarkSnapshots measures snapshots/s end to end, from the change topic to committed records
// on the snapshot topic: with a stage running and warmed up (group joined, first snapshot
// committed), 20,000 single-root transactions over 2,000 incidents are written through a fakeCDC;
// the clock runs from the first write until a read_committed reader has every snapshot.
func BenchmarkSnapshots(b *testing.B) {
	const txns, roots = 20_000, 2_000
	for range b.N {
		b.StopTimer()
		env := kafkatest.Start(b)
		cfg := testConfig(b, env, demoModel)
		reg := testRegistry(b, env)
		cdc := newFakeCDC(b, env, cfg, reg, demoTables)
		topic := cfg.Kafka.SnapshotTopic(cfg.Model.Roots[0])
		runStage(b, cfg, reg)
		warm := seedIncident()
		warm["id"] = "-1"
		cdc.txn(change{table: "session.instance", op: avro.OpCreate, key: "2523", after: seedSession()},
			change{table: "incident.instance", op: avro.OpCreate, key: "-1", after: warm})
		snapshots(b, env, reg, topic, 1)

		b.StartTimer()
		start := time.Now()
		for i := range txns {
			inc := seedIncident()
			inc["id"] = strconv.Itoa(i % roots)
			op := avro.OpUpdate
			if i < roots {
				op = avro.OpCreate
			}
			cdc.lsn += 0x100
			cdc.xid++
			cdc.txnAtNoFlush(cdc.lsn, cdc.xid, change{table: "incident.instance", op: op, key: inc["id"], after: inc})
		}
		if err := cdc.cl.Flush(b.Context()); err != nil {
			b.Fatal(err)
		}
		snaps := snapshots(b, env, reg, topic, txns+1)
		took := time.Since(start)
		b.StopTimer()
		checkVersions(b, snaps)
		b.ReportMetric(float64(txns)/took.Seconds(), "snapshots/s")
	}
}

// BenchmarkRestore100k measures restoring one partition of 100,000 roots (~1.5 KiB of state
// each) from the changelog into a fresh worker.
func BenchmarkRestore100k(b *testing.B) {
	const roots = 100_000
	var total time.Duration
	for range b.N {
		b.StopTimer()
		took := restoreRoots(b, roots, b.StartTimer)
		b.StopTimer()
		total += took
	}
	avg := total / time.Duration(b.N)
	b.ReportMetric(avg.Seconds(), "restore-s")
	b.ReportMetric(roots/avg.Seconds(), "roots/s")
}
