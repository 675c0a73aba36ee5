package cdc

import (
	"fmt"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/walhook/walhook/internal/kafkatest"
	"github.com/walhook/walhook/internal/tracing"
)

// Every change record and TxnEnd of a source transaction carries the traceparent of that
// transaction's span.
func TestTraceparentPerTransaction(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(t.Context())
	e := newEnv(t, "")
	changeTopic := e.cfg.Kafka.ChangeTopic(e.cfg.Model.Roots[0])
	e.start("a", WithTracerProvider(tp))
	e.waitActive()

	e.exec(`BEGIN;
		INSERT INTO session.instance (id, status, tenant_id) VALUES (2523, 'COMPLETED', 't1');
		INSERT INTO incident.instance (id, name, status, severity, start_time, session_instance_id, tenant_id)
			VALUES (134, 'Face not detected', 'TRIGGERED', 'LOW', '2026-02-03T10:46:23.260Z', 2523, 't1');
		COMMIT;`)
	e.exec(`UPDATE incident.instance SET status = 'RESOLVED' WHERE id = 134`)

	got := e.consume(changeTopic).until(30*time.Second, func(rs []rec) error {
		if n := countKind(rs, "txn-end"); n < 2 {
			return fmt.Errorf("%d txn ends", n)
		}
		return nil
	})
	var spans tracetest.SpanStubs
	kafkatest.Eventually(t, 10*time.Second, func() error {
		spans = nil
		for _, s := range exp.GetSpans() {
			if s.Name == "cdc.txn" {
				spans = append(spans, s)
			}
		}
		if len(spans) < 2 {
			return fmt.Errorf("%d cdc.txn spans", len(spans))
		}
		return nil
	})
	byXid := map[int64]string{}
	for _, s := range spans {
		var xid int64
		for _, a := range s.Attributes {
			if a.Key == "walhook.xid" {
				xid = a.Value.AsInt64()
			}
		}
		byXid[xid] = string(tracing.Append(nil, s.SpanContext))
	}
	for i, g := range got {
		var xid uint32
		switch g.kind {
		case "change":
			xid = g.change.Xid
		case "txn-end":
			xid = g.end.Xid
		default:
			continue
		}
		want, ok := byXid[int64(xid)]
		if !ok {
			t.Fatalf("record %d: no span for xid %d (spans %v)", i, xid, byXid)
		}
		if h := header(g.r, tracing.Header); h != want {
			t.Fatalf("record %d (%s, xid %d): traceparent %q, want %q", i, g.kind, xid, h, want)
		}
	}
}
