// Package dltest holds the test helpers of the poison-record path that the stages' tests share:
// write records a stage cannot decode with a plain producer, wait for them in a poison topic,
// and check what the poison record kept.
package dltest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/deadletter"
	"github.com/walhook/walhook/internal/kafkatest"
)

// Garbage values no stage decodes: a Confluent frame naming a schema id no registry has, an
// Avro single-object frame of an unknown fingerprint, and bytes of no framing at all.
var Garbage = [][]byte{
	{0x00, 0x7f, 0xff, 0xff, 0x01, 'n', 'o', 't', ' ', 'a', 'v', 'r', 'o'},
	{0xc3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0x02, 0x04},
	[]byte("garbage from another producer"),
}

// Produce writes value under key to topic with a plain (non-transactional) producer, with a
// header of its own, and returns the record as written (partition and offset set).
func Produce(t testing.TB, env *kafkatest.Env, topic, key string, value []byte) *kgo.Record {
	t.Helper()
	cl := kafkatest.Client(t, env)
	rec := &kgo.Record{Topic: topic, Key: []byte(key), Value: value,
		Headers: []kgo.RecordHeader{{Key: "x-producer", Value: []byte("someone-else")}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatalf("dltest: produce garbage to %s: %v", topic, err)
	}
	return rec
}

// Wait reads the stage's poison topic (read_committed) until it holds at least n entries, and
// returns them; it fails the test at the deadline.
func Wait(t testing.TB, env *kafkatest.Env, cfg *config.Config, stage string, n int, timeout time.Duration) []deadletter.Entry {
	t.Helper()
	recs := kafkatest.ConsumeAll(t, env, cfg.PoisonTopic(stage), n, timeout, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	out := make([]deadletter.Entry, 0, len(recs))
	for _, r := range recs {
		e, ok := deadletter.Parse(r)
		if !ok {
			t.Fatalf("dltest: %s[%d]@%d lacks the walhook-dlq-* headers: %v", r.Topic, r.Partition, r.Offset, r.Headers)
		}
		out = append(out, e)
	}
	return out
}

// Find returns the entry whose source is src's topic, partition and offset, failing the test
// when there is none.
func Find(t testing.TB, entries []deadletter.Entry, src *kgo.Record) deadletter.Entry {
	t.Helper()
	for _, e := range entries {
		if e.Source == (deadletter.Position{Topic: src.Topic, Partition: src.Partition, Offset: src.Offset}) {
			return e
		}
	}
	t.Fatalf("dltest: no poison entry for %s[%d]@%d among %d: %+v", src.Topic, src.Partition, src.Offset, len(entries), entries)
	return deadletter.Entry{}
}

// Check asserts that e is src dead-lettered by stage: key, value and headers byte-identical, a
// reason that contains wantReason, a time set.
func Check(t testing.TB, e deadletter.Entry, src *kgo.Record, stage, wantReason string) {
	t.Helper()
	o := e.Original
	if e.Stage != stage || !bytes.Equal(o.Key, src.Key) || !bytes.Equal(o.Value, src.Value) || o.Topic != src.Topic || o.Partition != src.Partition {
		t.Fatalf("dltest: poison entry %+v (original %q=%q on %s[%d]) does not keep %s[%d]@%d %q=%q of stage %s",
			e, o.Key, o.Value, o.Topic, o.Partition, src.Topic, src.Partition, src.Offset, src.Key, src.Value, stage)
	}
	if len(o.Headers) != len(src.Headers) {
		t.Fatalf("dltest: original headers %v, want %v", o.Headers, src.Headers)
	}
	for i, h := range src.Headers {
		if o.Headers[i].Key != h.Key || !bytes.Equal(o.Headers[i].Value, h.Value) {
			t.Fatalf("dltest: original header %d is %s=%q, want %s=%q", i, o.Headers[i].Key, o.Headers[i].Value, h.Key, h.Value)
		}
	}
	if e.Reason == "" || !bytes.Contains([]byte(e.Reason), []byte(wantReason)) || e.At.IsZero() {
		t.Fatalf("dltest: poison entry reason %q (time %v), want one containing %q", e.Reason, e.At, wantReason)
	}
}

// CounterSum is the sum of a counter over all its label values; 0 when none was counted.
func CounterSum(t testing.TB, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.Metric {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// Eventually polls cond every 50ms until it is true, failing the test with what at the deadline.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
