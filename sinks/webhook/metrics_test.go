package webhook_test

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walhook/walhook/sinks/webhook"
	"github.com/walhook/walhook/sinks/webhook/webhooktest"
)

// sample is the value of the series name{labels} in reg; ok is false when no such series exists.
func sample(reg *prometheus.Registry, name string, labels map[string]string) (v float64, ok bool, err error) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, false, err
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, has := labels[lp.GetName()]; has && want != lp.GetValue() {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true, nil
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount()), true, nil
			default:
				return m.GetGauge().GetValue(), true, nil
			}
		}
	}
	return 0, false, nil
}

// TestMetricsCountOutcomes checks that the series operators alert on move with real deliveries:
// delivered 2xx, a failing endpoint's 5xx retries and dead letters, attempt latencies, and the
// per-endpoint backlog gauges.
func TestMetricsCountOutcomes(t *testing.T) {
	s := startServers(t)
	h := newHarness(t, s)
	ok := webhooktest.Start(t)
	failing := webhooktest.Start(t)
	failing.Always(webhooktest.Response{Status: 500})
	h.sub("acme", "incident.instance.updated", ok.URL()+"/ok")
	h.sub("acme", "incident.instance.updated", failing.URL()+"/failing")
	reg := prometheus.NewRegistry()
	h.run(webhook.WithRegisterer(reg))
	h.produce(snap("134", "acme", 1), snap("135", "acme", 1))

	eventually(t, func() error {
		for _, c := range []struct {
			name   string
			labels map[string]string
			min    float64
		}{
			{"walhook_webhook_deliveries_total", map[string]string{"outcome": "delivered", "status_class": "2xx"}, 2},
			{"walhook_webhook_deliveries_total", map[string]string{"status_class": "5xx"}, 2},
			{"walhook_webhook_attempt_duration_seconds", nil, 4},
			{"walhook_webhook_dead_letters_total", nil, 1},
			{"walhook_webhook_endpoint_pending", map[string]string{"endpoint": failing.URL()}, 0},
			{"walhook_webhook_oldest_pending_seconds", map[string]string{"endpoint": failing.URL()}, 0},
		} {
			v, found, err := sample(reg, c.name, c.labels)
			if err != nil {
				return err
			}
			if !found || v < c.min {
				return fmt.Errorf("%s%v = %v (found %v), want at least %v", c.name, c.labels, v, found, c.min)
			}
		}
		return nil
	})
}
