package status

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/deadletter"
	"github.com/walhook/walhook/internal/kafkatest"
)

// TestPoisonRecordsCounted: two poison records of bubble-up written in a transaction (as the
// stage writes them, with a commit marker after) count 2, the other stages' topics none, and the
// text names the command that lists them.
func TestPoisonRecordsCounted(t *testing.T) {
	env := kafkatest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := statusConfig(t, closedAddr(t), env.Brokers, kafkatest.TopicName(t, "poison")+".")
	topic := cfg.PoisonTopic(config.StageBubbleUp)
	adm := kadm.NewClient(kafkatest.Client(t, env))
	if resp, err := adm.CreateTopic(ctx, 2, -1, nil, topic); err != nil || resp.Err != nil {
		t.Fatalf("create %s: %v %v", topic, err, resp.Err)
	}
	txn := kafkatest.Client(t, env, kgo.TransactionalID(kafkatest.TxnID(t, "poison")))
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		src := &kgo.Record{Topic: "src", Partition: 1, Offset: int64(i), Key: []byte("k"), Value: []byte("garbage")}
		if err := txn.ProduceSync(ctx, deadletter.Record(topic, config.StageBubbleUp, src, errors.New("bad"), time.Now())).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	r, err := Collect(ctx, cfg, Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]PoisonTopic{}
	for _, p := range r.PoisonRecords {
		got[p.Stage] = p
	}
	if b := got[config.StageBubbleUp]; b.Records != 2 || b.Approximate || b.Topic != topic {
		t.Errorf("bubbleup poison records %+v, want exactly 2 in %s (the commit marker is no record)", b, topic)
	}
	if c := got[config.StageCompliance]; c.Records != 0 || !c.Missing {
		t.Errorf("compliance poison records %+v, want 0, topic missing", c)
	}
	var text strings.Builder
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "poison records of bubbleup: 2 in "+topic) || !strings.Contains(text.String(), "walhook dlq list --stage bubbleup") {
		t.Errorf("text does not report the poison records:\n%s", text.String())
	}
}
