package compliance_test

import (
	"context"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/deadletter"
	"github.com/walhook/walhook/internal/deadletter/dltest"
	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/kafkatest"
	"github.com/walhook/walhook/sinks/compliance"
)

// TestPoisonSnapshotsDeadLettered: records of another producer on the snapshot topic go to the
// compliance poison topic, byte for byte with headers naming where they were, in the
// transactions of their offsets; they are counted and the next snapshot is written.
func TestPoisonSnapshotsDeadLettered(t *testing.T) {
	h := newHarness(t, demo.ModelYAML)
	h.produce(seed(1, nil))
	var bad []*kgo.Record
	for _, g := range dltest.Garbage {
		bad = append(bad, dltest.Produce(t, h.env, h.snapshotTopic(), "134", g))
	}
	notObject := seed(2, nil)
	notObject.Payload = []byte(`[1, 2]`) // framed and decodable, but no object to write
	h.produce(notObject, seed(3, nil))
	prom := prometheus.NewRegistry()
	h.run(compliance.WithRegisterer(prom))

	got := h.consume(h.logTopic(), 2)
	if len(got) != 2 || got[1].value["version"] != int64(3) {
		t.Fatalf("log topic: %d records, want versions 1 and 3", len(got))
	}
	entries := dltest.Wait(t, h.env, h.cfg, config.StageCompliance, len(bad)+1, 30*time.Second)
	for _, b := range bad {
		dltest.Check(t, dltest.Find(t, entries, b), b, config.StageCompliance, "")
	}
	found := false
	for _, e := range entries {
		found = found || strings.Contains(e.Reason, "not a JSON object") && strings.Contains(string(e.Original.Value), "[1, 2]")
	}
	if !found {
		t.Errorf("no poison entry for the snapshot whose payload is not an object among %d", len(entries))
	}
	dltest.Eventually(t, 10*time.Second, "poison records counted", func() bool {
		return dltest.CounterSum(t, prom, "walhook_compliance_poison_records_total") == float64(len(bad)+1)
	})
}

// TestPoisonStopNamesRecord: with compliance.on_poison: stop the sink commits the records
// before the poison one, stops with an error naming it, and `walhook dlq skip` lets the next run
// go on with the record after it.
func TestPoisonStopNamesRecord(t *testing.T) {
	h := newHarness(t, demo.ModelYAML)
	h.cfg.Compliance.OnPoison = config.PoisonStop
	h.produce(seed(1, nil))
	bad := dltest.Produce(t, h.env, h.snapshotTopic(), "134", dltest.Garbage[2])
	h.produce(seed(2, nil))

	s, err := compliance.New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = s.Run(ctx)
	var stop *deadletter.StopError
	want := deadletter.Position{Topic: bad.Topic, Partition: bad.Partition, Offset: bad.Offset}
	if !errors.As(err, &stop) || stop.Record != want || !strings.Contains(err.Error(), "walhook dlq skip --stage compliance --topic "+bad.Topic) {
		t.Fatalf("Run = %v, want a stop naming %v", err, want)
	}
	if n := len(h.consume(h.logTopic(), 1)); n != 1 {
		t.Fatalf("log topic has %d records before the poison one, want 1", n)
	}
	if err := deadletter.Skip(ctx, h.cfg, config.StageCompliance, want, "skipped by the test"); err != nil {
		t.Fatalf("skip: %v", err)
	}
	dltest.Check(t, dltest.Wait(t, h.env, h.cfg, config.StageCompliance, 1, 30*time.Second)[0], bad, config.StageCompliance, "skipped by the test")
	h.run()
	if got := h.consume(h.logTopic(), 2); got[1].value["version"] != int64(2) {
		t.Fatalf("after the skip: log versions %v, %v", got[0].value["version"], got[1].value["version"])
	}
}

// TestRefusedProduceDeadLettered: the log topic's max.message.bytes refuses one version
// (MESSAGE_TOO_LARGE): after bounded retries the snapshot record goes to the poison topic and the
// next version is written; raising the limit and redriving writes the refused one.
func TestRefusedProduceDeadLettered(t *testing.T) {
	h := newHarness(t, demo.ModelYAML)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm := kadm.NewClient(h.prod)
	r := rand.New(rand.NewPCG(3, 4))
	raw := make([]byte, 15000)
	for i := range raw {
		raw[i] = byte(r.Uint32())
	}
	big := base64.StdEncoding.EncodeToString(raw)
	h.produce(seed(1, nil))
	prom := prometheus.NewRegistry()
	h.run(compliance.WithRegisterer(prom))
	h.consume(h.logTopic(), 1)
	// Lowered under the running sink: at start it refuses a topic whose max.message.bytes is
	// below kafka.max_record_bytes, and below that size records are not chunked.
	kafkatest.SetTopicConfig(t, adm, h.logTopic(), "max.message.bytes", "4096")
	h.produce(seed(2, map[string]any{"description": big}), seed(3, nil))

	got := h.consume(h.logTopic(), 2)
	if len(got) != 2 || got[0].value["version"] != int64(1) || got[1].value["version"] != int64(3) {
		t.Fatalf("log topic: %d records, want versions 1 and 3", len(got))
	}
	e := dltest.Wait(t, h.env, h.cfg, config.StageCompliance, 1, 30*time.Second)[0]
	if !strings.Contains(e.Reason, "MESSAGE_TOO_LARGE") || e.Source.Topic != h.snapshotTopic() {
		t.Fatalf("poison entry from %v, reason %q: want the snapshot of version 2 refused with MESSAGE_TOO_LARGE", e.Source, e.Reason)
	}
	if n := dltest.CounterSum(t, prom, "walhook_compliance_txn_aborts_total"); n > 10 {
		t.Fatalf("%v transactions aborted: the refused produce was retried in a loop", n)
	}
	kafkatest.SetTopicConfig(t, adm, h.logTopic(), "max.message.bytes", "10485760")
	if n, err := deadletter.Redrive(ctx, kafkatestManual(t, h), e); err != nil || n != 1 {
		t.Fatalf("redrive: %d, %v", n, err)
	}
	got = h.consume(h.logTopic(), 3)
	if got[2].value["version"] != int64(2) {
		t.Fatalf("after the redrive the log's third record is version %v, want 2", got[2].value["version"])
	}
}

func kafkatestManual(t *testing.T, h *harness) *kgo.Client {
	return kafkatest.Client(t, h.env, kgo.RecordPartitioner(kgo.ManualPartitioner()))
}
