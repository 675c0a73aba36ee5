package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/chunked"
	"github.com/walhook/walhook/internal/kafkaconn"
)

// ErrNotFound: retrigger found no snapshot of the root (and version) for the subscription.
var ErrNotFound = errors.New("webhook: no matching snapshot")

// ReadTopic calls fn for every record of topic from its start up to its end offsets at the time
// of the call (kafkaconn.ReadTopic).
func ReadTopic(ctx context.Context, cfg config.Kafka, topic string, fn func(*kgo.Record) error) error {
	return kafkaconn.ReadTopic(ctx, cfg, topic, fn)
}

// RequestRecord is a re-trigger or replay request for the sink, on the request topic.
func RequestRecord(cfg config.Kafka, j Job) *kgo.Record {
	v, _ := json.Marshal(j)
	return &kgo.Record{Topic: cfg.WebhookRequestTopic(), Key: jobKey(j.Subscription, j.Snapshot.Key), Value: v}
}

// rootOf finds the root whose events include eventType.
func rootOf(cfg *config.Config, eventType string) (config.Root, error) {
	for _, r := range cfg.Model.Roots {
		prefix := strings.ReplaceAll(r.EventPrefix, ".", "_") + "_"
		if strings.HasPrefix(eventType, prefix) {
			return r, nil
		}
	}
	return config.Root{}, fmt.Errorf("webhook: no root of the model emits %s; check model.roots[].event_prefix", eventType)
}

// FindSnapshot reads the snapshot topic of sub's root for the snapshot of rootKey with sub's
// tenant and event type: version when > 0, else the latest.
func FindSnapshot(ctx context.Context, cfg *config.Config, reg avro.Registry, sub *Subscription, rootKey string, version int64) (avro.Snapshot, error) {
	root, err := rootOf(cfg, sub.EventType)
	if err != nil {
		return avro.Snapshot{}, err
	}
	var found avro.Snapshot
	err = ReadTopic(ctx, cfg.Kafka, cfg.Kafka.SnapshotTopic(root), func(r *kgo.Record) error {
		if string(r.Key) != rootKey {
			return nil
		}
		_, body, err := reg.Resolve(ctx, r.Value)
		if err != nil {
			return err
		}
		s, err := avro.DecodeSnapshot(body)
		if err != nil {
			return err
		}
		if s.Tenant != sub.Tenant || s.EventType != sub.EventType || (version > 0 && s.Version != version) {
			return nil
		}
		if s.Version > found.Version {
			found = s
		}
		return nil
	})
	if err != nil {
		return avro.Snapshot{}, err
	}
	if found.Version == 0 {
		return avro.Snapshot{}, fmt.Errorf("%w: %s key %q version %d for tenant %s", ErrNotFound, sub.EventType, rootKey, version, sub.Tenant)
	}
	return found, nil
}

// Retrigger asks the sink to deliver snap to sub again (attempt 1, same webhook-id).
func Retrigger(ctx context.Context, cl *kgo.Client, cfg config.Kafka, sub *Subscription, snap avro.Snapshot) error {
	j := Job{Subscription: sub.UUID, Snapshot: toSnapJSON(&snap), Attempt: 1, Kind: "retrigger"}
	return cl.ProduceSync(ctx, chunked.Expand([]*kgo.Record{RequestRecord(cfg, j)}, kafkaconn.RecordLimit(cfg))...).FirstErr()
}

// Replay asks the sink to deliver again every dead-lettered delivery of subscription subUUID
// dead-lettered at or after since. It returns how many it requested.
func Replay(ctx context.Context, cl *kgo.Client, cfg config.Kafka, subUUID string, since time.Time) (int, error) {
	return RedriveMatching(ctx, cl, cfg, func(d DeadLetter) bool {
		return d.Job.Subscription == subUUID && !d.Job.DeadAt.Before(since)
	})
}

// Attempts returns the attempt log of subscription subUUID, oldest first.
func Attempts(ctx context.Context, cfg config.Kafka, subUUID string) ([]Attempt, error) {
	var out []Attempt
	err := ReadTopic(ctx, cfg, cfg.WebhookAttemptTopic(), func(r *kgo.Record) error {
		if string(r.Key) != subUUID {
			return nil
		}
		var a Attempt
		if err := json.Unmarshal(r.Value, &a); err != nil {
			return nil
		}
		out = append(out, a)
		return nil
	})
	return out, err
}
