package compliance

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walhook/walhook/internal/deadletter"
)

// metrics of the compliance sink, registered on the Registerer given to New.
type metrics struct {
	records       *prometheus.CounterVec // by topic; rate() is records per second
	txnSeconds    prometheus.Histogram
	aborts        prometheus.Counter
	registrations *prometheus.CounterVec // by topic
	// sessionRestarts counts group sessions replaced after a failed Kafka transaction.
	sessionRestarts prometheus.Counter
	poison          *prometheus.CounterVec // by source topic, cause
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		poison: deadletter.NewCounter("compliance"),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "walhook", Subsystem: "compliance", Name: "records_total",
			Help: "Compliance records committed, by topic (tombstones included); rate() is records per second.",
		}, []string{"topic"}),
		txnSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "walhook", Subsystem: "compliance", Name: "txn_seconds",
			Help:    "Latency of one Kafka transaction, from begin to committed end.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		aborts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "walhook", Subsystem: "compliance", Name: "txn_aborts_total",
			Help: "Kafka transactions aborted (rebalance, produce error); their input is consumed again.",
		}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "walhook", Subsystem: "compliance", Name: "schema_registrations_total",
			Help: "New compliance schema versions registered (or published to the schema topic), by topic.",
		}, []string{"topic"}),
		sessionRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "walhook", Subsystem: "compliance", Name: "session_restarts_total",
			Help: "Group sessions replaced in process after a Kafka transaction failed (broker failover, fencing, timeout).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.records, m.txnSeconds, m.aborts, m.registrations, m.sessionRestarts, m.poison} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("compliance: register metrics: %w", err)
		}
	}
	return m, nil
}
