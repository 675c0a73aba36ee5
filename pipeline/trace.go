package pipeline

import (
	"context"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/walhook/walhook/internal/tracing"
)

// WithTracerProvider continues the trace of each source transaction: a span "bubbleup.emit" per
// snapshot, child of the traceparent on the TxnEnd that ended it, whose own traceparent the
// snapshot record carries. Default (nil): no tracing, no header.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(s *Stage) { s.tracer = tracing.Tracer(tp) }
}

// emitted runs for every snapshot the TxnEnd end produced: a debug line and, when tracing, the
// emit span and the snapshot's traceparent header.
func (w *partWorker) emitted(ctx context.Context, end, snap *kgo.Record) {
	if ce := w.log.Check(zap.DebugLevel, "snapshot emitted"); ce != nil {
		v, _ := strconv.ParseInt(header(snap, headerVersion), 10, 64)
		ce.Write(zap.String("root_key", string(snap.Key)), zap.Int64("version", v),
			zap.String("event_type", header(snap, headerEventType)), zap.Int64("offset", end.Offset))
	}
	if w.s.tracer == nil {
		return
	}
	v, _ := strconv.ParseInt(header(snap, headerVersion), 10, 64)
	_, span := w.s.tracer.Start(tracing.Context(ctx, tracing.Value(end.Headers)), "bubbleup.emit",
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("walhook.root", w.rm.cfg.Table), attribute.String("walhook.root_key", string(snap.Key)),
			attribute.Int64("walhook.version", v), attribute.String("walhook.event_type", header(snap, headerEventType))))
	snap.Headers = append(snap.Headers, kgo.RecordHeader{Key: tracing.Header, Value: tracing.Append(make([]byte, 0, 55), span.SpanContext())})
	span.End()
}
