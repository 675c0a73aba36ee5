package webhook

import (
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/walhook/walhook/internal/tracing"
)

// WithTracerProvider continues the trace a snapshot record (or a retry record) carries in its
// traceparent header: a span "webhook.attempt" per delivery attempt, whose traceparent the
// request, the retry record and the dead letter carry. Default (nil): no tracing.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(s *Sink) { s.tracer = tracing.Tracer(tp) }
}

// traced notes the traceparent of r on its tasks when tracing is enabled.
func (s *Sink) traced(r *kgo.Record, tasks []*task) []*task {
	if s.tracer == nil {
		return tasks
	}
	if v := tracing.Value(r.Headers); v != nil {
		for _, t := range tasks {
			t.trace = v
		}
	}
	return tasks
}

// traceHeaders are the headers that carry t's trace to a retry or dead-letter record.
func (t *task) traceHeaders() []kgo.RecordHeader {
	if t.trace == nil {
		return nil
	}
	return []kgo.RecordHeader{{Key: tracing.Header, Value: t.trace}}
}

// tracedSend is one attempt inside a "webhook.attempt" span, child of the task's traceparent.
func (s *Sink) tracedSend(sub *Subscription, t *task) attempt {
	ctx, span := s.tracer.Start(tracing.Context(s.ctx, t.trace), "webhook.attempt",
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("walhook.subscription", sub.UUID), attribute.Int("walhook.attempt", t.job.Attempt),
			attribute.String("walhook.event_type", t.snap.EventType), attribute.String("walhook.root_key", t.snap.Key),
			attribute.Int64("walhook.version", t.snap.Version)))
	defer span.End()
	a := s.sender.send(ctx, sub, &t.snap, t.webhookID(), t.job.Attempt)
	span.SetAttributes(attribute.Int("http.response.status_code", a.status))
	if a.err != nil {
		span.SetStatus(codes.Error, a.err.Kind.String())
		span.SetAttributes(attribute.String("walhook.error", a.err.Error()))
	}
	return a
}
