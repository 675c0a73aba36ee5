package status

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/kafkaconn"
	"github.com/walhook/walhook/internal/kafkatest"
)

func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func statusConfig(t *testing.T, pg string, brokers []string, prefix string) *config.Config {
	t.Helper()
	cfg, err := config.ParseWith([]byte(fmt.Sprintf(`postgres: {url: "postgres://walhook@%s/x?sslmode=disable"}
kafka: {brokers: [%s], topic_prefix: %q}
model: {roots: [{table: incident.instance, key: id}]}
`, pg, strings.Join(brokers, ","), prefix)), "test", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestLagCountsRecordsNotMarkers: on a topic written in Kafka transactions, a group that
// consumed everything stands before the last commit marker. Its lag is 0, not 1 per partition,
// records of an aborted transaction do not count, and the oldest undelivered record is a
// record, not a marker.
func TestLagCountsRecordsNotMarkers(t *testing.T) {
	env := kafkatest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prefix := kafkatest.TopicName(t, "lag") + "."
	cfg := statusConfig(t, closedAddr(t), env.Brokers, prefix)
	snapshots := cfg.Kafka.SnapshotTopic(cfg.Model.Roots[0])
	adm := kadm.NewClient(kafkatest.Client(t, env))
	if resp, err := adm.CreateTopic(ctx, 2, -1, nil, snapshots); err != nil || resp.Err != nil {
		t.Fatalf("create %s: %v %v", snapshots, err, resp.Err)
	}
	txn := kafkatest.Client(t, env, kgo.TransactionalID(kafkatest.TxnID(t, "lag")), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	produce := func(commit bool, part int32, n int, at time.Time) {
		t.Helper()
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			r := &kgo.Record{Topic: snapshots, Partition: part, Value: []byte("v"), Timestamp: at.Add(time.Duration(i) * time.Second)}
			if err := txn.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := txn.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	// Partition 0: 3 records + marker, then an aborted transaction of 2 + its marker: offsets
	// 0-2 records, 3 commit marker, 4-5 aborted, 6 abort marker.
	produce(true, 0, 3, base)
	produce(false, 0, 2, base)
	// Partition 1: 2 records + marker (0-2), then 2 more + marker (3-5).
	produce(true, 1, 2, base)
	produce(true, 1, 2, base.Add(10*time.Minute))

	group := cfg.WebhookGroup()
	var commit kadm.Offsets
	commit.AddOffset(snapshots, 0, 3, -1) // consumed every record of partition 0
	commit.AddOffset(snapshots, 1, 3, -1) // two records of partition 1 still to deliver
	if resp, err := adm.CommitOffsets(ctx, group, commit); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", err, resp.Error())
	}

	r, err := Collect(ctx, cfg, Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var got *TopicLag
	for _, g := range r.Groups {
		for i, tl := range g.Topics {
			if g.Group == group && tl.Topic == snapshots {
				got = &g.Topics[i]
			}
		}
	}
	if got == nil || got.Lag != 2 || got.Approximate {
		t.Errorf("webhook lag on %s: %+v; want exactly 2 (the offsets span 7: markers and aborted records are not lag)", snapshots, got)
	}
	if u := r.OldestUndelivered; u == nil || u.Partition != 1 || u.Offset != 3 || !u.Timestamp.Equal(base.Add(10*time.Minute)) {
		t.Errorf("oldest undelivered: %+v; want %s[1]@3", u, snapshots)
	}
	// PostgreSQL was not reachable: unknown, with the reason, and the Kafka part still read.
	if r.Slot.Unknown == "" || !strings.Contains(r.Slot.Unknown, "PostgreSQL not reachable") || r.DisabledSubscriptionsUnknown == "" {
		t.Errorf("slot %+v, disabled subscriptions unknown %q: want the reason", r.Slot, r.DisabledSubscriptionsUnknown)
	}

	// Caught up on partition 1 too: standing before the last marker is lag 0.
	commit = kadm.Offsets{}
	commit.AddOffset(snapshots, 1, 5, -1)
	if resp, err := adm.CommitOffsets(ctx, group, commit); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", err, resp.Error())
	}
	if r, err = Collect(ctx, cfg, Options{Timeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if r.Check(Thresholds{MaxSlotLagBytes: -1, MaxConsumerLag: 0, MaxDLQ: -1}) {
		for _, v := range r.Violations {
			if strings.Contains(v, snapshots) && strings.Contains(v, cfg.WebhookGroup()) {
				t.Errorf("a caught-up webhook group crosses --max-consumer-lag 0: %v", v)
			}
		}
	}
	if r.OldestUndelivered != nil {
		t.Errorf("oldest undelivered %+v, want none", r.OldestUndelivered)
	}
}

// TestUnreadableKafkaIsUnknown: with the broker down every Kafka part says unknown and why,
// and nothing reads as zero.
func TestUnreadableKafkaIsUnknown(t *testing.T) {
	cfg := statusConfig(t, closedAddr(t), []string{closedAddr(t)}, "walhook.")
	start := time.Now()
	r, err := Collect(context.Background(), cfg, Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("Collect took %v with a 2s timeout", took)
	}
	if r.DeadLetters.Unknown == "" || r.OldestUndeliveredUnknown == "" || len(r.Groups) != 3 {
		t.Fatalf("report: %+v", r)
	}
	for _, g := range r.Groups {
		if !strings.Contains(g.Unknown, "Kafka not reachable") || !strings.Contains(g.Unknown, "connection refused") {
			t.Errorf("group %s: unknown %q; want the reason", g.Group, g.Unknown)
		}
	}
	var out strings.Builder
	if err := r.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"dead letters: 0", "oldest undelivered: none", "disabled subscriptions: 0"} {
		if strings.Contains(out.String(), bad) {
			t.Errorf("text shows %q for what it could not read:\n%s", bad, out.String())
		}
	}
	if !strings.Contains(out.String(), "dead letters: unknown (Kafka not reachable") {
		t.Errorf("text:\n%s", out.String())
	}
}

// TestConsumerProtocolGroupState: a stage on kafka.group_protocol: consumer (KIP-848) is in a
// group Apache Kafka's classic DescribeGroups calls Dead; status must show the state its
// coordinator has. (kfake answers the classic describe for such groups too, so only the run on
// Apache Kafka, make test-kafka, can catch a regression.)
func TestConsumerProtocolGroupState(t *testing.T) {
	env := kafkatest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prefix := kafkatest.TopicName(t, "kip848") + "."
	cfg := statusConfig(t, closedAddr(t), env.Brokers, prefix)
	cfg.Kafka.GroupProtocol = config.GroupProtocolConsumer
	snapshots := cfg.Kafka.SnapshotTopic(cfg.Model.Roots[0])
	adm := kadm.NewClient(kafkatest.Client(t, env))
	if resp, err := adm.CreateTopic(ctx, 2, -1, nil, snapshots); err != nil || resp.Err != nil {
		t.Fatalf("create %s: %v %v", snapshots, err, resp.Err)
	}
	member := kafkatest.Client(t, env, append(kafkaconn.GroupOpts(cfg.Kafka, 10*time.Second),
		kgo.ConsumerGroup(cfg.WebhookGroup()), kgo.ConsumeTopics(snapshots))...)
	joined := func() error { // polling is what makes the member join and heartbeat
		pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer pcancel()
		member.PollFetches(pctx)
		r, err := Collect(ctx, cfg, Options{Timeout: 10 * time.Second})
		if err != nil {
			return err
		}
		for _, g := range r.Groups {
			if g.Group == cfg.WebhookGroup() && g.State != "Stable" {
				return fmt.Errorf("group %s: state %q, want Stable", g.Group, g.State)
			}
		}
		return nil
	}
	var err error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		if err = joined(); err == nil {
			return
		}
	}
	t.Fatal(err)
}
