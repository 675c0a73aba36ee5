package compliance_test

import (
	"testing"
	"time"

	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/sinks/compliance"
)

// BenchmarkCompliance measures end-to-end compliance throughput over kfake: snapshot records
// already on the snapshot topic, consumed, typed, encoded and written to both topics in Kafka
// transactions. It reports snapshot versions per second (each is two compliance records).
func BenchmarkCompliance(b *testing.B) {
	h := newHarness(b, demo.ModelYAML)
	const roots = 200
	versions := max(1, b.N/roots)
	snaps := load(roots, versions)
	for i := 0; i < len(snaps); i += 1000 {
		h.produce(snaps[i:min(i+1000, len(snaps))]...)
	}
	b.ResetTimer()
	start := time.Now()
	h.run(compliance.WithMaxPollRecords(1000))
	h.consume(h.logTopic(), len(snaps))
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(len(snaps))/elapsed.Seconds(), "versions/s")
	b.ReportMetric(2*float64(len(snaps))/elapsed.Seconds(), "records/s")
}
