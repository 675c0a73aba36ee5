package webhook

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/chunked"
	"github.com/walhook/walhook/internal/kafkaconn"
)

// ReplayWindow asks the sink to deliver to sub again every snapshot of its tenant and event
// type committed in [from, until): attempt 1, each with its stable webhook-id, so a receiver
// that already has a version can drop it. It reads the root's snapshot topic (bounded by its
// retention) and returns how many deliveries it requested.
func ReplayWindow(ctx context.Context, cl *kgo.Client, cfg *config.Config, reg avro.Registry, sub *Subscription, from, until time.Time) (int, error) {
	if !until.After(from) {
		return 0, invalid("until", "%s is not after since %s; give a window whose end is after its start",
			until.UTC().Format(time.RFC3339), from.UTC().Format(time.RFC3339))
	}
	root, err := rootOf(cfg, sub.EventType)
	if err != nil {
		return 0, err
	}
	var recs []*kgo.Record
	err = ReadTopic(ctx, cfg.Kafka, cfg.Kafka.SnapshotTopic(root), func(r *kgo.Record) error {
		_, body, err := reg.Resolve(ctx, r.Value)
		if err != nil {
			return err
		}
		s, err := avro.DecodeSnapshot(body)
		if err != nil {
			return err
		}
		if s.Tenant != sub.Tenant || s.EventType != sub.EventType || s.CommitTime.Before(from) || !s.CommitTime.Before(until) {
			return nil
		}
		recs = append(recs, RequestRecord(cfg.Kafka, Job{Subscription: sub.UUID, Snapshot: toSnapJSON(&s), Attempt: 1, Kind: "replay"}))
		return nil
	})
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	return len(recs), cl.ProduceSync(ctx, chunked.Expand(recs, kafkaconn.RecordLimit(cfg.Kafka))...).FirstErr()
}
