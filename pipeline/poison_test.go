package pipeline

import (
	"context"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/deadletter"
	"github.com/walhook/walhook/internal/deadletter/dltest"
	"github.com/walhook/walhook/internal/kafkatest"
)

// incompressible is n characters no producer compression shrinks much.
func incompressible(n int) string {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n*3/4+3)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return base64.StdEncoding.EncodeToString(b)[:n]
}

func incident(id, name string) map[string]string {
	inc := seedIncident()
	inc["id"], inc["name"] = id, name
	return inc
}

// TestPoisonRecordsDeadLettered: records of another producer on a change topic and on a
// reference topic (an unknown schema id, an unknown fingerprint, no framing) are copied to the
// stage's poison topic byte for byte with the headers naming where they were, counted, and the
// next ordinary transaction of the same root is emitted.
func TestPoisonRecordsDeadLettered(t *testing.T) {
	env := kafkatest.Start(t)
	cfg := testConfig(t, env, demoModel)
	reg := testRegistry(t, env)
	cdc := newFakeCDC(t, env, cfg, reg, demoTables)
	prom := prometheus.NewRegistry()
	runStage(t, cfg, reg, WithRegisterer(prom))
	root := cfg.Model.Roots[0]

	cdc.txn(change{table: "session.instance", op: avro.OpCreate, key: "2523", after: seedSession()},
		change{table: "incident.instance", op: avro.OpCreate, key: "7", after: incident("7", "first")})
	snapshots(t, env, reg, cfg.Kafka.SnapshotTopic(root), 1)

	var bad []*kgo.Record
	for _, g := range dltest.Garbage {
		bad = append(bad, dltest.Produce(t, env, cfg.Kafka.ChangeTopic(root), "7", g))
	}
	bad = append(bad, dltest.Produce(t, env, cfg.Kafka.ReferenceTopic("session.instance"), "2523", dltest.Garbage[2]))
	start := time.Now()
	cdc.txn(change{table: "incident.instance", op: avro.OpUpdate, key: "7", after: incident("7", "second")})
	snaps := snapshots(t, env, reg, cfg.Kafka.SnapshotTopic(root), 2)
	checkVersions(t, snaps)
	if got := mustJSON(t, snaps[1].Payload).(map[string]any)["name"]; got != "second" {
		t.Fatalf("v2 name %v, want second", got)
	}
	t.Logf("next transaction after %d poison records emitted in %v", len(bad), time.Since(start))

	entries := dltest.Wait(t, env, cfg, config.StageBubbleUp, len(bad), 30*time.Second)
	for _, b := range bad {
		dltest.Check(t, dltest.Find(t, entries, b), b, config.StageBubbleUp, "")
	}
	dltest.Check(t, dltest.Find(t, entries, bad[0]), bad[0], config.StageBubbleUp, "schema id")
	dltest.Eventually(t, 10*time.Second, "poison records counted", func() bool {
		return dltest.CounterSum(t, prom, "walhook_bubbleup_poison_records_total") == float64(len(bad))
	})
}

// TestPoisonStopNamesRecord: with bubbleup.on_poison: stop the stage stops with an error naming
// the record and the command that skips it; that command (deadletter.Skip) copies it to the
// poison topic and moves the group past it, and the restarted stage emits the next transaction.
func TestPoisonStopNamesRecord(t *testing.T) {
	env := kafkatest.Start(t)
	cfg := testConfig(t, env, demoModel)
	cfg.BubbleUp.OnPoison = config.PoisonStop
	reg := testRegistry(t, env)
	cdc := newFakeCDC(t, env, cfg, reg, demoTables)
	root := cfg.Model.Roots[0]
	cdc.txn(change{table: "session.instance", op: avro.OpCreate, key: "2523", after: seedSession()},
		change{table: "incident.instance", op: avro.OpCreate, key: "7", after: incident("7", "first")})
	bad := dltest.Produce(t, env, cfg.Kafka.ChangeTopic(root), "7", dltest.Garbage[2])

	s, err := New(cfg, WithRegistry(reg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = s.Run(ctx)
	var stop *deadletter.StopError
	if !errors.As(err, &stop) {
		t.Fatalf("Run = %v, want a *deadletter.StopError", err)
	}
	want := deadletter.Position{Topic: bad.Topic, Partition: bad.Partition, Offset: bad.Offset}
	cmd := "walhook dlq skip --stage bubbleup --topic " + bad.Topic + " --partition " + strconv.Itoa(int(bad.Partition)) + " --offset " + strconv.FormatInt(bad.Offset, 10)
	if stop.Record != want || !strings.Contains(err.Error(), cmd) {
		t.Fatalf("stop error %q names %v, want %v and %q", err, stop.Record, want, cmd)
	}
	snapshots(t, env, reg, cfg.Kafka.SnapshotTopic(root), 1) // the records before it were committed first

	if err := deadletter.Skip(ctx, cfg, config.StageBubbleUp, want, "skipped by the test"); err != nil {
		t.Fatalf("skip: %v", err)
	}
	dltest.Check(t, dltest.Wait(t, env, cfg, config.StageBubbleUp, 1, 30*time.Second)[0], bad, config.StageBubbleUp, "skipped by the test")
	runStage(t, cfg, reg)
	cdc.txn(change{table: "incident.instance", op: avro.OpUpdate, key: "7", after: incident("7", "second")})
	checkVersions(t, snapshots(t, env, reg, cfg.Kafka.SnapshotTopic(root), 2))
}

// TestRefusedProduceDeadLetteredAndRedriven: the snapshot topic's max.message.bytes refuses one
// root's snapshot (MESSAGE_TOO_LARGE). The stage retries with backoff, one record per
// transaction, dead-letters the record whose output is refused and emits the others; a bounded
// number of transactions is aborted, not a loop. After the topic's limit is raised, a redrive
// of the poison record emits the missing snapshot.
func TestRefusedProduceDeadLetteredAndRedriven(t *testing.T) {
	env := kafkatest.Start(t)
	cfg := testConfig(t, env, demoModel)
	reg := testRegistry(t, env)
	root := cfg.Model.Roots[0]
	snapTopic := cfg.Kafka.SnapshotTopic(root)
	adm := kadm.NewClient(kafkatest.Client(t, env))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cdc := newFakeCDC(t, env, cfg, reg, demoTables)
	prom := prometheus.NewRegistry()
	runStage(t, cfg, reg, WithRegisterer(prom))

	cdc.txn(change{table: "session.instance", op: avro.OpCreate, key: "2523", after: seedSession()},
		change{table: "incident.instance", op: avro.OpCreate, key: "1", after: incident("1", "small")})
	snapshots(t, env, reg, snapTopic, 1)
	// Lowered under the running stage: at start it refuses a topic whose max.message.bytes is
	// below kafka.max_record_bytes, and below that size records are not chunked.
	kafkatest.SetTopicConfig(t, adm, snapTopic, "max.message.bytes", "4096")
	start := time.Now()
	big := incompressible(20000)
	cdc.txn(change{table: "incident.instance", op: avro.OpCreate, key: "2", after: incident("2", big)})
	cdc.txn(change{table: "incident.instance", op: avro.OpCreate, key: "3", after: incident("3", "after the big one")})
	byKey := func(snaps []avro.Snapshot) map[string]avro.Snapshot {
		m := map[string]avro.Snapshot{}
		for _, s := range snaps {
			m[s.Key] = s
		}
		return m
	}
	if got := byKey(snapshots(t, env, reg, snapTopic, 2)); len(got) != 2 || got["3"].Version != 1 {
		t.Fatalf("snapshots of roots %v: want roots 1 and 3, root 3 emitted after the refused root 2", got)
	}
	t.Logf("next transaction after the refused one emitted in %v", time.Since(start))
	entries := dltest.Wait(t, env, cfg, config.StageBubbleUp, 1, 30*time.Second)
	e := entries[0]
	if string(e.Original.Key) != "2" || header(e.Original, headerKind) != "txn-end" || !strings.Contains(e.Reason, "MESSAGE_TOO_LARGE") {
		t.Fatalf("poison entry key %q kind %q reason %q: want root 2's txn-end refused with MESSAGE_TOO_LARGE",
			e.Original.Key, header(e.Original, headerKind), e.Reason)
	}
	if n := dltest.CounterSum(t, prom, "walhook_bubbleup_txn_aborts_total"); n > 10 {
		t.Fatalf("%v transactions aborted: the refused produce was retried in a loop", n)
	}
	dltest.Eventually(t, 10*time.Second, "poison record counted", func() bool {
		return dltest.CounterSum(t, prom, "walhook_bubbleup_poison_records_total") == 1
	})

	kafkatest.SetTopicConfig(t, adm, snapTopic, "max.message.bytes", "1048576")
	cl := kafkatest.Client(t, env, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var all []deadletter.Entry
	if err := deadletter.Read(ctx, cfg, config.StageBubbleUp, func(e deadletter.Entry) error { all = append(all, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if n, err := deadletter.Redrive(ctx, cl, all...); err != nil || n != 1 {
		t.Fatalf("redrive: %d, %v", n, err)
	}
	last := byKey(snapshots(t, env, reg, snapTopic, 3))["2"]
	if last.Key != "2" || last.Version != 1 || last.Verb != avro.VerbCreated || !strings.Contains(string(last.Payload), big) {
		t.Fatalf("after the redrive: %s v%d %s, want root 2 v1 created with its name", last.Key, last.Version, last.Verb)
	}
}
