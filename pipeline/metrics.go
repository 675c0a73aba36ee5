package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/walhook/walhook/internal/deadletter"
)

// metrics of the bubble-up stage, registered on the Registerer given to New.
type metrics struct {
	snapshots      *prometheus.CounterVec // by event type; rate() is snapshots per second
	commitSeconds  prometheus.Histogram
	aborts         prometheus.Counter
	restoreSeconds prometheus.Histogram
	restoredRoots  prometheus.Counter
	stateRoots     prometheus.Gauge
	stateBytes     prometheus.GaugeFunc
	lag            *prometheus.GaugeVec
	orphans        prometheus.Counter
	// chunkedRecords counts snapshots and changelog records above kafka.max_record_bytes written
	// as chunks; strayChunks the chunks read that no group waited for.
	chunkedRecords prometheus.Counter
	strayChunks    prometheus.Counter
	// sessionRestarts counts group sessions replaced after a failed Kafka transaction.
	sessionRestarts prometheus.Counter
	refInexact      *prometheus.CounterVec // by root (event prefix), reference field, reason
	refVersions     prometheus.GaugeFunc
	refPruned       prometheus.Counter
	poison          *prometheus.CounterVec // by source topic, cause
}

func newMetrics(reg prometheus.Registerer, diskUsage, refVersions func() float64) (*metrics, error) {
	m := &metrics{
		poison: deadletter.NewCounter("bubbleup"),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "walhook", Subsystem: "bubbleup", Name: "snapshots_total",
			Help: "Snapshots committed to the snapshot topics, by event type.",
		}, []string{"event_type"}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "walhook", Subsystem: "bubbleup", Name: "txn_commit_seconds",
			Help:    "Latency of ending one Kafka transaction (flush, offset commit, end).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		aborts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "walhook", Subsystem: "bubbleup", Name: "txn_aborts_total",
			Help: "Kafka transactions aborted (rebalance, produce error); their input is consumed again.",
		}),
		restoreSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "walhook", Subsystem: "bubbleup", Name: "restore_seconds",
			Help:    "Time to restore one assigned partition's state from the changelog.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}),
		restoredRoots: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "walhook", Subsystem: "bubbleup", Name: "restored_roots_total",
			Help: "Roots restored from the changelog.",
		}),
		stateRoots: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "walhook", Subsystem: "bubbleup", Name: "state_roots",
			Help: "Roots held in the local state of the assigned partitions.",
		}),
		stateBytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "walhook", Subsystem: "bubbleup", Name: "state_bytes",
			Help: "Disk space used by the local state store.",
		}, diskUsage),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "walhook", Subsystem: "bubbleup", Name: "consumer_lag_records",
			Help: "Records between the last consumed offset and the high watermark, per input partition.",
		}, []string{"topic", "partition"}),
		orphans: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "walhook", Subsystem: "bubbleup", Name: "orphan_changes_total",
			Help: "Source transactions of a root whose state is incomplete (no root row, or not read by the initial snapshot yet): state updated, no snapshot emitted.",
		}),
		chunkedRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "walhook", Subsystem: "bubbleup", Name: "chunked_records_total",
			Help: "Snapshots and changelog records above kafka.max_record_bytes, written as chunk records.",
		}),
		strayChunks: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "walhook", Subsystem: "bubbleup", Name: "stray_chunks_total",
			Help: "Chunk records dropped because no chunk group waited for them (the rest of a record its producer stopped writing; written again).",
		}),
		sessionRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "walhook", Subsystem: "bubbleup", Name: "session_restarts_total",
			Help: "Group sessions replaced in process after a Kafka transaction failed (broker failover, fencing, timeout).",
		}),
		refInexact: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "walhook", Subsystem: "bubbleup", Name: "reference_inexact_total",
			Help: "References a snapshot showed with a version other than the one as of its source transaction, which was not available " +
				"(reason history_removed: beyond bubbleup.reference_history; before_snapshot_read: the row was first read by the initial snapshot after the transaction).",
		}, []string{"root", "reference", "reason"}),
		refVersions: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "walhook", Subsystem: "bubbleup", Name: "reference_versions",
			Help: "Versions of referenced rows in the local reference store (on disk).",
		}, refVersions),
		refPruned: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "walhook", Subsystem: "bubbleup", Name: "reference_versions_pruned_total",
			Help: "Superseded versions of referenced rows dropped from the reference store: no pending snapshot needs them, or beyond bubbleup.reference_history.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.snapshots, m.commitSeconds, m.aborts, m.restoreSeconds, m.restoredRoots, m.stateRoots, m.stateBytes, m.lag, m.orphans, m.chunkedRecords, m.strayChunks,
		m.sessionRestarts, m.refInexact, m.refVersions, m.refPruned, m.poison} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
