package pipeline

import (
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/kafkatest"
)

// BenchmarkSnapshots measures snapshots/s end to end, from the change topic to committed records
// on the snapshot topic: with a stage running and warmed up (group joined, first snapshot
// committed), 20,000 single-root transactions over 2,000 incidents are written through a fakeCDC;
// the clock runs from the first write until a read_committed reader has every snapshot. Every
// incident references session 2523.
func BenchmarkSnapshots(b *testing.B) { benchSnapshots(b, 0) }

// BenchmarkSnapshotsSessionChanges is BenchmarkSnapshots with references that change: the
// incidents point at 200 sessions, and between every two incident transactions a transaction
// changes one session (20,000 incident snapshots, 10,000 session versions), so snapshots built
// behind the reference reader look up older versions.
func BenchmarkSnapshotsSessionChanges(b *testing.B) { benchSnapshots(b, 200) }

func benchSnapshots(b *testing.B, sessions int) {
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
		setup := []change{{table: "session.instance", op: avro.OpCreate, key: "2523", after: seedSession()}}
		for s := range sessions {
			sess := seedSession()
			sess["id"] = strconv.Itoa(s)
			setup = append(setup, change{table: "session.instance", op: avro.OpCreate, key: sess["id"], after: sess})
		}
		cdc.txn(append(setup, change{table: "incident.instance", op: avro.OpCreate, key: "-1", after: warm})...)
		snapshots(b, env, reg, topic, 1)

		b.StartTimer()
		start, cpu0 := time.Now(), processCPU(b)
		for i := range txns {
			inc := seedIncident()
			inc["id"] = strconv.Itoa(i % roots)
			if sessions > 0 {
				inc["session_instance_id"] = strconv.Itoa(i % sessions)
			}
			op := avro.OpUpdate
			if i < roots {
				op = avro.OpCreate
			}
			cdc.lsn += 0x100
			cdc.xid++
			cdc.txnAtNoFlush(cdc.lsn, cdc.xid, change{table: "incident.instance", op: op, key: inc["id"], after: inc})
			if sessions > 0 && i%2 == 1 {
				sess := seedSession()
				sess["id"], sess["score"] = strconv.Itoa((i*7)%sessions), strconv.Itoa(i%100)
				cdc.lsn += 0x100
				cdc.xid++
				cdc.txnAtNoFlush(cdc.lsn, cdc.xid, change{table: "session.instance", op: avro.OpUpdate, key: sess["id"], after: sess})
			}
		}
		if err := cdc.cl.Flush(b.Context()); err != nil {
			b.Fatal(err)
		}
		written := time.Since(start)
		snaps := snapshots(b, env, reg, topic, txns+1)
		took, cpu := time.Since(start), processCPU(b)-cpu0
		b.StopTimer()
		checkVersions(b, snaps)
		b.ReportMetric(float64(txns)/took.Seconds(), "snapshots/s")
		// The writer shares the machine with the stage: when write-s is close to the total, the
		// figure is the writer's, not the stage's.
		b.ReportMetric(written.Seconds(), "write-s")
		// CPU of the whole process (writer, kfake, stage, reader) per snapshot: on a shared
		// machine this moves far less with the load than the wall-clock rate does.
		b.ReportMetric(float64(txns)/cpu.Seconds(), "snapshots/cpu-s")
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

// processCPU is the user and system CPU time the process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
