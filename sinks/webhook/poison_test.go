package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/deadletter"
	"github.com/walhook/walhook/internal/deadletter/dltest"
	"github.com/walhook/walhook/sinks/webhook"
	"github.com/walhook/walhook/sinks/webhook/webhooktest"
)

func TestPoison(t *testing.T) {
	s := startServers(t)
	t.Run("DeadLettered", func(t *testing.T) { testPoisonDeadLettered(t, s) })
	t.Run("Stop", func(t *testing.T) { testPoisonStop(t, s) })
}

// testPoisonDeadLettered: records of another producer on the snapshot topic and on the request
// topic go to the sink's poison topic byte for byte with headers naming where they were, are
// counted, and the next snapshot is delivered.
func testPoisonDeadLettered(t *testing.T, s *servers) {
	h := newHarness(t, s)
	rcv := webhooktest.Start(t)
	h.sub("acme", "incident.instance.updated", rcv.URL()+"/hook")
	prom := prometheus.NewRegistry()
	h.run(webhook.WithRegisterer(prom))
	h.produce(snap("134", "acme", 1))
	var bad []*kgo.Record
	for _, g := range dltest.Garbage {
		bad = append(bad, dltest.Produce(t, s.kafka, h.cfg.Kafka.SnapshotTopic(h.root), "134", g))
	}
	bad = append(bad, dltest.Produce(t, s.kafka, h.cfg.Kafka.WebhookRequestTopic(), "x", dltest.Garbage[2]))
	start := time.Now()
	h.produce(snap("134", "acme", 2))
	eventually(t, func() error {
		if n := rcv.Count(); n < 2 {
			return fmt.Errorf("%d requests, want versions 1 and 2", n)
		}
		return nil
	})
	t.Logf("next snapshot after %d poison records delivered in %v", len(bad), time.Since(start))
	entries := dltest.Wait(t, s.kafka, h.cfg, config.StageDeliver, len(bad), 30*time.Second)
	for _, b := range bad {
		dltest.Check(t, dltest.Find(t, entries, b), b, config.StageDeliver, "undecodable")
	}
	dltest.Eventually(t, 10*time.Second, "poison records counted", func() bool {
		return dltest.CounterSum(t, prom, "walhook_webhook_poison_records_total") == float64(len(bad))
	})
}

// testPoisonStop: with deliver.on_poison: stop the sink stops with an error naming the record
// and the command that skips it; after the skip the next run delivers the next snapshot.
func testPoisonStop(t *testing.T, s *servers) {
	h := newHarness(t, s, func(c *config.Config) { c.Deliver.OnPoison = config.PoisonStop })
	rcv := webhooktest.Start(t)
	h.sub("acme", "incident.instance.updated", rcv.URL()+"/hook")
	bad := dltest.Produce(t, s.kafka, h.cfg.Kafka.SnapshotTopic(h.root), "134", dltest.Garbage[0])
	sink, err := webhook.New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = sink.Run(ctx)
	var stop *deadletter.StopError
	want := deadletter.Position{Topic: bad.Topic, Partition: bad.Partition, Offset: bad.Offset}
	if !errors.As(err, &stop) || stop.Record != want || !strings.Contains(err.Error(), "walhook dlq skip --stage deliver --topic "+bad.Topic) {
		t.Fatalf("Run = %v, want a stop naming %v", err, want)
	}
	if err := deadletter.Skip(ctx, h.cfg, config.StageDeliver, want, "skipped by the test"); err != nil {
		t.Fatalf("skip: %v", err)
	}
	dltest.Check(t, dltest.Wait(t, s.kafka, h.cfg, config.StageDeliver, 1, 30*time.Second)[0], bad, config.StageDeliver, "skipped by the test")
	h.run()
	h.produce(snap("134", "acme", 2))
	eventually(t, func() error {
		if n := rcv.Count(); n < 1 {
			return errors.New("the snapshot after the skipped record was not delivered")
		}
		return nil
	})
}
