package webhook

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// TestIndexKeepsDisabledOutOfTheHotMap: enabling, disabling and deleting subscriptions through
// incremental changes moves them between the hot map (what a snapshot is matched against) and
// the cold one, and forgetCold releases disabled ones after their retention.
func TestIndexKeepsDisabledOutOfTheHotMap(t *testing.T) {
	x := newIndex()
	on := &Subscription{UUID: "a", Tenant: "t", EventType: "e_updated", Enabled: true}
	other := &Subscription{UUID: "b", Tenant: "t", EventType: "e_updated", Enabled: true}
	x.replace([]*Subscription{on, other})
	hot, cold := x.match("t", "e_updated")
	if len(hot) != 2 || len(cold) != 0 {
		t.Fatalf("after load: hot %d cold %d, want 2 0", len(hot), len(cold))
	}
	off := *on
	off.Enabled = false
	x.apply([]*Subscription{&off}, nil)
	hot2, cold := x.match("t", "e_updated")
	if len(hot2) != 1 || hot2[0].UUID != "b" || len(cold) != 1 || cold[0].UUID != "a" {
		t.Fatalf("after disabling a: hot %v cold %v", hot2, cold)
	}
	if len(hot) != 2 {
		t.Fatalf("a slice returned before the change was modified: %v", hot)
	}
	if e, d := x.counts(); e != 1 || d != 1 {
		t.Fatalf("counts %d enabled %d disabled, want 1 1", e, d)
	}
	if n := x.forgetCold(time.Now(), time.Hour); n != 0 {
		t.Fatalf("forgot %d subscriptions before their retention", n)
	}
	if n := x.forgetCold(time.Now().Add(time.Hour), time.Hour); n != 1 || x.get("a") != nil {
		t.Fatalf("forgetCold released %d, a still known: %v", n, x.get("a") != nil)
	}
	x.apply(nil, []string{"b"})
	if hot, cold := x.match("t", "e_updated"); len(hot)+len(cold) != 0 || x.get("b") != nil {
		t.Fatalf("after deleting b: hot %v cold %v", hot, cold)
	}
	if e, d := x.counts(); e != 0 || d != 0 {
		t.Fatalf("counts %d %d after everything left, want 0 0", e, d)
	}
}

// TestIndexReenabledIsNotForgotten: a subscription disabled and enabled again through
// incremental changes is an enabled subscription: forgetCold, which releases disabled ones after
// their retention, must not take it out of the hot map (its snapshots would match nothing and be
// committed undelivered).
func TestIndexReenabledIsNotForgotten(t *testing.T) {
	x := newIndex()
	on := &Subscription{UUID: "a", Tenant: "t", EventType: "e_updated", Enabled: true}
	x.replace([]*Subscription{on})
	off := *on
	off.Enabled = false
	x.apply([]*Subscription{&off}, nil)
	again := *on
	x.apply([]*Subscription{&again}, nil)
	if e, d := x.counts(); e != 1 || d != 0 {
		t.Fatalf("after enabling a again: counts %d enabled %d disabled, want 1 0", e, d)
	}
	if n := x.forgetCold(time.Now().Add(time.Hour), time.Hour); n != 0 {
		t.Fatalf("forgetCold released %d subscriptions; a is enabled", n)
	}
	if hot, _ := x.match("t", "e_updated"); len(hot) != 1 || x.get("a") == nil {
		t.Fatalf("enabled subscription a left the index: hot %v", hot)
	}
}

// BenchmarkIndexMemory reports the live heap per subscription of the sink's index at 100,000
// subscriptions over 50,000 tenants (two each), shaped as loadAll reads them: own uuid, URL and
// secret strings, interned tenant, event type, method and format, no headers.
func BenchmarkIndexMemory(b *testing.B) {
	const n = 100_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	x := newIndex()
	subs := make([]*Subscription, n)
	tenants := make([]string, n/2)
	for i := range tenants {
		tenants[i] = fmt.Sprintf("tenant-%06d", i)
	}
	for i := range subs {
		subs[i] = &Subscription{ID: int64(i), UUID: fmt.Sprintf("%08x-1b2c-4d5e-8f90-%012x", i, i), AppID: 1,
			Tenant: tenants[i%len(tenants)], EventType: "incident_instance_updated",
			URL: fmt.Sprintf("https://hooks.example.com/tenants/%d/incidents", i), Method: "POST", Format: "bare",
			Enabled: true, Secret: "whsec_" + fmt.Sprintf("%044d", i), CreatedAt: time.Now(), EnabledLSN: uint64(i)}
	}
	x.replace(subs)
	subs = nil
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	runtime.KeepAlive(x)
	b.ReportMetric(per, "bytes/subscription")
	b.Logf("index of %d subscriptions: %.0f bytes of live heap per subscription", n, per)
}
