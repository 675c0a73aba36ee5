// Package tracing carries W3C trace context (the traceparent header) across walhook's Kafka
// records. The stages take an OpenTelemetry TracerProvider through their options; nil disables
// tracing, and then nothing here runs.
package tracing

import (
	"context"
	"encoding/hex"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"
)

// Header is the record header (and HTTP header) that carries the trace context.
const Header = "traceparent"

// Scope is the instrumentation scope name of walhook's tracers.
const Scope = "github.com/walhook/walhook"

// Tracer returns tp's walhook tracer, nil when tp is nil (tracing disabled).
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer(Scope)
}

// Append appends sc as a version-00 traceparent value: 00-<trace id>-<span id>-<flags>.
func Append(dst []byte, sc trace.SpanContext) []byte {
	tid, sid := sc.TraceID(), sc.SpanID()
	dst = append(dst, "00-"...)
	dst = hex.AppendEncode(dst, tid[:])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, sid[:])
	dst = append(dst, '-')
	return hex.AppendEncode(dst, []byte{byte(sc.TraceFlags())})
}

// Parse reads a version-00 traceparent value; ok is false when v is not one or is invalid.
func Parse(v []byte) (sc trace.SpanContext, ok bool) {
	if len(v) != 55 || v[0] != '0' || v[1] != '0' || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return sc, false
	}
	var tid trace.TraceID
	var sid trace.SpanID
	var fl [1]byte
	if _, err := hex.Decode(tid[:], v[3:35]); err != nil {
		return sc, false
	}
	if _, err := hex.Decode(sid[:], v[36:52]); err != nil {
		return sc, false
	}
	if _, err := hex.Decode(fl[:], v[53:55]); err != nil {
		return sc, false
	}
	sc = trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.TraceFlags(fl[0]), Remote: true})
	return sc, sc.IsValid()
}

// Value returns the traceparent header's value among hs, nil when there is none.
func Value(hs []kgo.RecordHeader) []byte {
	for _, h := range hs {
		if h.Key == Header {
			return h.Value
		}
	}
	return nil
}

// Context returns ctx carrying the remote span context of the traceparent value v; ctx itself
// when v is absent or invalid (the next span is then a root).
func Context(ctx context.Context, v []byte) context.Context {
	if sc, ok := Parse(v); ok {
		return trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	return ctx
}
