package cdc

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of one stage, labelled with its slot.
type metrics struct {
	lagBytes     prometheus.Gauge
	confirmedLSN prometheus.Gauge
	rows         prometheus.Counter
	txns         prometheus.Counter
	produceLat   prometheus.Observer
	spillBytes   *prometheus.GaugeVec
	standby      prometheus.Gauge
	// chunkedRecords and chunks count records above kafka.max_record_bytes and the chunk
	// records they were written as.
	chunkedRecords prometheus.Counter
	chunks         prometheus.Counter
	truncates      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, slot string) (*metrics, error) {
	labels := prometheus.Labels{"slot": slot}
	m := &metrics{}
	var errs []error
	register := func(c prometheus.Collector) prometheus.Collector {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return are.ExistingCollector
			}
			errs = append(errs, err)
		}
		return c
	}
	m.lagBytes = register(prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "walhook_cdc_slot_lag_bytes", ConstLabels: labels,
		Help: "Bytes of WAL between the server's WAL end and the LSN confirmed to PostgreSQL.",
	})).(prometheus.Gauge)
	m.confirmedLSN = register(prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "walhook_cdc_confirmed_lsn", ConstLabels: labels,
		Help: "The LSN confirmed to PostgreSQL (every change up to it is acknowledged by Kafka).",
	})).(prometheus.Gauge)
	m.chunkedRecords = register(prometheus.NewCounter(prometheus.CounterOpts{
		Name: "walhook_cdc_chunked_records_total", ConstLabels: labels,
		Help: "Records above kafka.max_record_bytes, written as chunk records.",
	})).(prometheus.Counter)
	m.chunks = register(prometheus.NewCounter(prometheus.CounterOpts{
		Name: "walhook_cdc_chunks_total", ConstLabels: labels,
		Help: "Chunk records written for records above kafka.max_record_bytes.",
	})).(prometheus.Counter)
	m.rows = register(prometheus.NewCounter(prometheus.CounterOpts{
		Name: "walhook_cdc_rows_total", ConstLabels: labels,
		Help: "Row changes written to Kafka (rate() gives rows per second).",
	})).(prometheus.Counter)
	m.txns = register(prometheus.NewCounter(prometheus.CounterOpts{
		Name: "walhook_cdc_transactions_total", ConstLabels: labels,
		Help: "Source transactions written to Kafka (rate() gives transactions per second).",
	})).(prometheus.Counter)
	m.produceLat = register(prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "walhook_cdc_produce_latency_seconds", ConstLabels: labels,
		Help:    "Time from producing a record to its acknowledgement by Kafka.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})).(prometheus.Histogram)
	m.spillBytes = register(prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "walhook_cdc_stream_buffer_bytes", ConstLabels: labels,
		Help: "Bytes of in-progress streamed transactions held, by where (memory, disk).",
	}, []string{"where"})).(*prometheus.GaugeVec)
	m.standby = register(prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "walhook_cdc_standby", ConstLabels: labels,
		Help: "1 while this process waits for another walhook cdc to release the slot's lock.",
	})).(prometheus.Gauge)
	m.truncates = register(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "walhook_cdc_truncates_total", ConstLabels: labels,
		Help: "TRUNCATEs of model tables written to Kafka, by table (bubble-up gives every root they changed a version).",
	}, []string{"table"})).(*prometheus.CounterVec)
	return m, errors.Join(errs...)
}

func (m *metrics) spill(mem, disk int64) {
	m.spillBytes.WithLabelValues("memory").Set(float64(mem))
	m.spillBytes.WithLabelValues("disk").Set(float64(disk))
}
