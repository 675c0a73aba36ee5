package e2e

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/kafkaconn"
)

// tap reads the snapshot topic and both compliance topics from their start, read_committed, for
// the whole run, so the checks see exactly what a transactional consumer sees.
type tap struct {
	snapTopic, logTopic, latestTopic string

	mu      sync.Mutex
	records map[string][]*kgo.Record // guarded by mu; by topic, in partition order
	lastErr error                    // guarded by mu; the last fetch error (topics appear late)
}

func startTap(t *testing.T, cfg *config.Config) *tap {
	t.Helper()
	root := cfg.Model.Roots[0]
	tp := &tap{
		snapTopic:   cfg.Kafka.SnapshotTopic(root),
		logTopic:    cfg.Compliance.Log.Topic(cfg.Kafka, root),
		latestTopic: cfg.Compliance.Latest.Topic(cfg.Kafka, root),
		records:     map[string][]*kgo.Record{},
	}
	opts, err := kafkaconn.Opts(cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(opts,
		kgo.ConsumeTopics(tp.snapTopic, tp.logTopic, tp.latestTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(250*time.Millisecond),
		kgo.MetadataMinAge(250*time.Millisecond),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			tp.mu.Lock()
			fs.EachError(func(_ string, _ int32, err error) {
				if !errors.Is(err, context.Canceled) {
					tp.lastErr = err
				}
			})
			fs.EachRecord(func(r *kgo.Record) { tp.records[r.Topic] = append(tp.records[r.Topic], r) })
			tp.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		cl.Close()
	})
	return tp
}

// counts returns how many snapshot and compliance log records were read.
func (tp *tap) counts() (snapshots, log int) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return len(tp.records[tp.snapTopic]), len(tp.records[tp.logTopic])
}

// take returns a copy of what was read of topic.
func (tp *tap) take(topic string) []*kgo.Record {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([]*kgo.Record(nil), tp.records[topic]...)
}
