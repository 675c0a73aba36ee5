package e2e

import (
	"fmt"
	"math"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// printStageMetrics prints the stages' own histograms (count, mean, bucket-interpolated p50 and
// p99) and the bubble-up snapshots per Kafka transaction: where a slow hop spends its time.
func printStageMetrics(reg *prometheus.Registry) {
	mfs, err := reg.Gather()
	if err != nil {
		fmt.Printf("  stage metrics: %v\n", err)
		return
	}
	var snaps, txns float64
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetHistogram() != nil:
				h := m.GetHistogram()
				if strings.Contains(name, "txn_commit_seconds") {
					txns = float64(h.GetSampleCount())
				}
				if h.GetSampleCount() == 0 {
					continue
				}
				fmt.Printf("  %-44s n %-7d mean %6.1fms  p50 ≤%6.1fms  p99 ≤%6.1fms\n", name, h.GetSampleCount(),
					1000*h.GetSampleSum()/float64(h.GetSampleCount()), 1000*bucketQuantile(h, .5), 1000*bucketQuantile(h, .99))
			case strings.Contains(name, "bubbleup_snapshots_total") && m.GetCounter() != nil:
				snaps += m.GetCounter().GetValue()
			}
		}
	}
	if txns > 0 {
		fmt.Printf("  bubbleup: %.0f snapshots in %.0f Kafka transactions (%.1f per transaction), since start\n", snaps, txns, snaps/txns)
	}
}

// bucketQuantile is the upper bound of the bucket holding quantile q.
func bucketQuantile(h *dto.Histogram, q float64) float64 {
	want := q * float64(h.GetSampleCount())
	for _, b := range h.GetBucket() {
		if float64(b.GetCumulativeCount()) >= want {
			return b.GetUpperBound()
		}
	}
	return math.Inf(1)
}

// webhookFailures is the sink's attempts that did not deliver, by outcome (e.g. failed_retryable
// for a timeout or a full endpoint queue, which defers the delivery through a retry topic).
func webhookFailures(reg *prometheus.Registry) map[string]float64 {
	out := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != "walhook_webhook_deliveries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() != "delivered" {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}
