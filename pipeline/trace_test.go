package pipeline

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/kafkatest"
	"github.com/walhook/walhook/internal/tracing"
)

// The snapshot of a source transaction continues the trace on its TxnEnd: a bubbleup.emit span,
// child of the TxnEnd's span, whose traceparent the snapshot record carries.
func TestEmitContinuesTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	env := kafkatest.Start(t)
	cfg := testConfig(t, env, candidateModel)
	reg := testRegistry(t, env)
	cdc := newFakeCDC(t, env, cfg, reg, candidateTables)
	runStage(t, cfg, reg, WithTracerProvider(tp))

	_, src := tp.Tracer("test").Start(context.Background(), "cdc.txn")
	src.End()
	parent := tracing.Append(nil, src.SpanContext())
	recs := cdc.records(0x2000000, 900, change{table: "talent.candidate", op: avro.OpCreate, key: "9",
		after: map[string]string{"id": "9", "name": "Ada", "tenant_id": "acme", "is_deleted": "f"}})
	for _, r := range recs {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: tracing.Header, Value: parent})
	}
	if err := cdc.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	got := kafkatest.ConsumeAll(t, env, cfg.Kafka.SnapshotTopic(cfg.Model.Roots[0]), 1, 60*time.Second, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	var emit tracetest.SpanStub
	kafkatest.Eventually(t, 10*time.Second, func() error {
		for _, s := range exp.GetSpans() {
			if s.Name == "bubbleup.emit" {
				emit = s
				return nil
			}
		}
		return fmt.Errorf("no bubbleup.emit span")
	})
	if emit.Parent.SpanID() != src.SpanContext().SpanID() || emit.SpanContext.TraceID() != src.SpanContext().TraceID() {
		t.Fatalf("bubbleup.emit parent %v, want %v", emit.Parent, src.SpanContext())
	}
	if h, want := string(tracing.Value(got[0].Headers)), string(tracing.Append(nil, emit.SpanContext)); h != want {
		t.Fatalf("snapshot traceparent %q, want %q", h, want)
	}
	attrs := map[string]string{}
	for _, a := range emit.Attributes {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	if attrs["walhook.root"] != "talent.candidate" || attrs["walhook.root_key"] != "9" || attrs["walhook.version"] != "1" {
		t.Fatalf("bubbleup.emit attributes %v", attrs)
	}
}
