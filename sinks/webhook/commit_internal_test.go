package webhook

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap/zaptest"
)

// A periodic commit that lands during a rebalance is refused per partition (no request error).
// commitLoop must commit that watermark again, even though it does not change: after the
// workload stops, nothing else ever moves it, and the group stalls at the older offset.
func TestCommitRetriesPartitionErrors(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var commits atomic.Int32
	c.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if commits.Add(1) > 1 {
			return nil, nil, false
		}
		r := req.(*kmsg.OffsetCommitRequest)
		resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.RebalanceInProgress.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumerGroup("g"), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	s := &Sink{log: zaptest.NewLogger(t), cl: cl, parts: map[tp]*partition{}}
	p := &partition{topic: "t", id: 1}
	p.committable.Store(5)
	s.parts[tp{"t", 1}] = p

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	last := map[tp]int64{}
	s.commitOnce(ctx, last) // refused: REBALANCE_IN_PROGRESS
	s.commitOnce(ctx, last) // the same watermark, committed again
	if n := commits.Load(); n != 2 {
		t.Fatalf("%d commit requests, want 2 (the refused watermark was not retried)", n)
	}
	offs, err := kadm.NewClient(cl).FetchOffsets(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup("t", 1); !ok || o.At != 5 {
		t.Fatalf("committed offset of t/1 = %+v (found %v), want 5", o, ok)
	}
}
