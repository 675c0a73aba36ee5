package webhook_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/tracing"
	"github.com/walhook/walhook/sinks/webhook"
	"github.com/walhook/walhook/sinks/webhook/webhooktest"
)

// A delivery attempt continues the trace on its snapshot record: a webhook.attempt span, child of
// the snapshot's span, whose traceparent the request carries.
func TestAttemptContinuesTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	h := newHarness(t, startServers(t))
	rcv := webhooktest.Start(t)
	sub := h.sub("acme", "incident_instance_updated", rcv.URL()+"/x")
	h.run(webhook.WithTracerProvider(tp))

	_, src := tp.Tracer("test").Start(context.Background(), "bubbleup.emit")
	src.End()
	s := snap("134", "acme", 1)
	rec := &kgo.Record{Topic: h.cfg.Kafka.SnapshotTopic(h.root), Key: []byte(s.Key),
		Value: avro.AppendSnapshot(append([]byte(nil), h.prefix...), s),
		Headers: []kgo.RecordHeader{{Key: "walhook-event-type", Value: []byte(s.EventType)},
			{Key: "walhook-version", Value: []byte("1")}, {Key: "walhook-tenant", Value: []byte(s.Tenant)},
			{Key: tracing.Header, Value: tracing.Append(nil, src.SpanContext())}}}
	if err := h.prod.ProduceSync(t.Context(), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var span tracetest.SpanStub
	eventually(t, func() error {
		for _, sp := range exp.GetSpans() {
			if sp.Name == "webhook.attempt" {
				span = sp
				return nil
			}
		}
		return fmt.Errorf("no webhook.attempt span (%d requests)", rcv.Count())
	})
	if span.Parent.SpanID() != src.SpanContext().SpanID() || span.SpanContext.TraceID() != src.SpanContext().TraceID() {
		t.Fatalf("webhook.attempt parent %v, want %v", span.Parent, src.SpanContext())
	}
	attrs := map[string]string{}
	for _, a := range span.Attributes {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	if attrs["walhook.subscription"] != sub.UUID || attrs["walhook.attempt"] != "1" || attrs["http.response.status_code"] != "200" {
		t.Fatalf("webhook.attempt attributes %v", attrs)
	}
	reqs := rcv.Requests()
	if len(reqs) != 1 || reqs[0].Header.Get(tracing.Header) != string(tracing.Append(nil, span.SpanContext)) {
		t.Fatalf("request traceparent %q, want the attempt span %s", reqs[0].Header.Get(tracing.Header), span.SpanContext.SpanID())
	}
}
