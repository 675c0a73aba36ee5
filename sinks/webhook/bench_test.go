package webhook_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/sinks/webhook"
	"github.com/walhook/walhook/sinks/webhook/webhooktest"
)

const (
	benchEndpoints   = 10
	benchConcurrency = 16
	benchDeliveries  = 6000
)

// BenchmarkDeliver measures, in one run (use -benchtime=1x; b.N is ignored):
//   - bare: deliveries/s of a bare http.Client loop (benchEndpoints × benchConcurrency
//     goroutines) to fast local receivers;
//   - sink: deliveries/s of the sink to the same kind of receivers, all healthy;
//   - sink_1dead: deliveries/s to the 9 healthy endpoints while the 10th never answers (30 s
//     request timeout);
//
// and reports sink/bare and sink_1dead/sink.
func BenchmarkDeliver(b *testing.B) {
	s := startServers(b)
	bare := benchBare(b)
	healthy := benchSink(b, s, false)
	dead := benchSink(b, s, true)
	b.ReportMetric(bare, "bare_deliveries/s")
	b.ReportMetric(healthy, "sink_deliveries/s")
	b.ReportMetric(dead, "sink_1dead_healthy_deliveries/s")
	b.ReportMetric(healthy/bare, "sink/bare")
	b.ReportMetric(dead/healthy, "1dead/healthy")
	b.Logf("bare %.0f/s, sink %.0f/s (%.2f of bare), with 1 of %d endpoints dead %.0f/s (%.2f of healthy)",
		bare, healthy, healthy/bare, benchEndpoints, dead, dead/healthy)
}

func benchBare(b *testing.B) float64 {
	rcvs := make([]*webhooktest.Receiver, benchEndpoints)
	for i := range rcvs {
		rcvs[i] = webhooktest.Start(b)
	}
	payload := snap("1", "t", 1).Payload
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchConcurrency}}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range benchEndpoints * benchConcurrency {
		url := rcvs[i%benchEndpoints].URL()
		wg.Go(func() {
			for next.Add(1) <= benchDeliveries {
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload))
				req.Header.Set("Content-Type", "application/json")
				resp, err := cl.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	return benchDeliveries / time.Since(start).Seconds()
}

// benchSinkConfig is the sink's configuration in the throughput benchmarks: no rate limit, the
// default circuit, a request timeout long enough that a dead endpoint holds its slots.
func benchSinkConfig(c *config.Config) {
	c.Deliver.EndpointConcurrency = benchConcurrency
	c.Deliver.EndpointRate = 1e9
	c.Deliver.EndpointBurst = 1e9
	c.Deliver.RequestTimeout = 30 * time.Second
	c.Deliver.CircuitFailures = config.DefaultCircuitFailures
	c.Kafka.Partitions = 6
}

func benchSink(b *testing.B, s *servers, oneDead bool) float64 {
	h := newHarness(b, s, benchSinkConfig)
	rcvs := make([]*webhooktest.Receiver, benchEndpoints)
	for i := range rcvs {
		rcvs[i] = webhooktest.Start(b)
		h.sub(fmt.Sprintf("t%d", i), "incident.instance.updated", rcvs[i].URL())
	}
	healthy := benchEndpoints
	if oneDead {
		rcvs[0].Always(webhooktest.Response{Never: true})
		healthy--
	}
	perEndpoint := benchDeliveries / benchEndpoints
	snaps := make([]avro.Snapshot, 0, benchDeliveries)
	for i := range benchDeliveries {
		snaps = append(snaps, snap(fmt.Sprint(i), fmt.Sprintf("t%d", i%benchEndpoints), 1))
	}
	h.produce(snaps...)
	stop := h.run(webhook.WithLogger(zap.NewNop()))
	defer stop()
	start := time.Now().Add(time.Hour)
	want := perEndpoint * healthy
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for ctx.Err() == nil {
		got := 0
		for i, r := range rcvs {
			if !oneDead || i > 0 {
				got += r.Count()
			}
		}
		if got >= want {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ctx.Err() != nil {
		b.Fatalf("deliveries did not complete within 2 minutes")
	}
	// Time from the first request, so the consumer group join is not counted.
	end := time.Now()
	for _, r := range rcvs {
		if reqs := r.Requests(); len(reqs) > 0 && reqs[0].At.Before(start) {
			start = reqs[0].At
		}
	}
	return float64(want) / end.Sub(start).Seconds()
}
