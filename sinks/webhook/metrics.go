package webhook

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walhook/walhook/internal/deadletter"
)

// metrics of the sink. Endpoint gauges are computed at scrape time from the endpoints' pending
// tasks, so idle endpoints cost nothing between scrapes.
type metrics struct {
	deliveries  *prometheus.CounterVec // outcome, status class
	latency     prometheus.Histogram
	deadLetters prometheus.Counter
	disabled    *prometheus.CounterVec // reason
	thin        prometheus.Counter
	deferred    *prometheus.CounterVec // reason
	poison      *prometheus.CounterVec // source topic, cause
}

func newMetrics(reg prometheus.Registerer, s *Sink) *metrics {
	m := &metrics{
		poison: deadletter.NewCounter("webhook"),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "walhook_webhook_deliveries_total",
			Help: "Webhook attempts by outcome (delivered, retry, dead_letter, gone, disabled_target, unknown_subscription) and status class (2xx, 4xx, 5xx, none)."},
			[]string{"outcome", "status_class"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "walhook_webhook_attempt_duration_seconds",
			Help: "Latency of webhook requests.", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14)}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{Name: "walhook_webhook_dead_letters_total",
			Help: "Deliveries written to the dead-letter topic."}),
		thin: prometheus.NewCounter(prometheus.CounterOpts{Name: "walhook_webhook_thin_events_total",
			Help: "Attempts sent as a thin event because the payload was above deliver.max_payload_bytes (subscriptions with oversize thin)."}),
		disabled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "walhook_webhook_subscriptions_disabled_total",
			Help: "Subscriptions this sink disabled, by reason (gone, auto)."}, []string{"reason"}),
		deferred: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "walhook_webhook_deferred_total",
			Help: "Deliveries put off without a request (and without using up an attempt), by reason (circuit_open, tenant_backlog)."}, []string{"reason"}),
	}
	reg.MustRegister(m.deliveries, m.latency, m.deadLetters, m.disabled, m.thin, m.deferred, m.poison, &endpointCollector{s: s})
	return m
}

func (m *metrics) observe(t *task, a attempt) {
	outcome := OutcomeDelivered
	if a.err != nil {
		outcome = "failed_" + a.err.Kind.String()
	}
	m.deliveries.WithLabelValues(outcome, statusClass(a.status)).Inc()
	if a.thin {
		m.thin.Inc()
	}
	if a.latency > 0 {
		m.latency.Observe(a.latency.Seconds())
	}
}

func statusClass(code int) string {
	if code == 0 {
		return "none"
	}
	return strconv.Itoa(code/100) + "xx"
}

var (
	descBacklog = prometheus.NewDesc("walhook_webhook_endpoint_pending",
		"Deliveries pending per endpoint (held for retry, queued or in flight).", []string{"endpoint"}, nil)
	descRetry = prometheus.NewDesc("walhook_webhook_retry_backlog",
		"Pending deliveries per endpoint that are retries.", []string{"endpoint"}, nil)
	descOldest = prometheus.NewDesc("walhook_webhook_oldest_pending_seconds",
		"Age of the oldest pending delivery per endpoint, from its first attempt.", []string{"endpoint"}, nil)
	descConcurrency = prometheus.NewDesc("walhook_webhook_endpoint_concurrency",
		"Adaptive request concurrency limit per endpoint.", []string{"endpoint"}, nil)
	descDisabled = prometheus.NewDesc("walhook_webhook_disabled_subscriptions",
		"Disabled subscriptions in the sink's index.", nil, nil)
)

type endpointCollector struct{ s *Sink }

func (c *endpointCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBacklog
	ch <- descRetry
	ch <- descOldest
	ch <- descConcurrency
	ch <- descDisabled
}

func (c *endpointCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, ep := range c.s.eps.all() {
		n, retries, oldest := ep.backlog(now)
		ch <- prometheus.MustNewConstMetric(descBacklog, prometheus.GaugeValue, float64(n), ep.key)
		ch <- prometheus.MustNewConstMetric(descRetry, prometheus.GaugeValue, float64(retries), ep.key)
		ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, oldest.Seconds(), ep.key)
		ch <- prometheus.MustNewConstMetric(descConcurrency, prometheus.GaugeValue, float64(ep.concurrency()), ep.key)
	}
	_, disabled := c.s.idx.counts()
	ch <- prometheus.MustNewConstMetric(descDisabled, prometheus.GaugeValue, float64(disabled))
}
