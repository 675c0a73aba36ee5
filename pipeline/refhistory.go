package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"go.uber.org/zap"
)

// minCompactionLag is the topic config that keeps superseded records of a compacted topic.
const minCompactionLag = "min.compaction.lag.ms"

// describeTopicConfigs describes topics, retrying for up to 30 s while a broker does not know
// one yet (Apache Kafka answers UNKNOWN_TOPIC_OR_PARTITION for a moment after creating it).
func describeTopicConfigs(ctx context.Context, adm *kadm.Client, topics []string) (kadm.ResourceConfigs, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		rcs, err := adm.DescribeTopicConfigs(ctx, topics...)
		if err == nil {
			for _, rc := range rcs {
				if rc.Err != nil {
					err = fmt.Errorf("topic %s: %w", rc.Name, rc.Err)
					break
				}
			}
		}
		if err == nil || !errors.Is(err, kerr.UnknownTopicOrPartition) || time.Now().After(deadline) {
			return rcs, err
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ensureReferenceHistory makes every reference topic keep the history bubbleup.reference_history
// promises: min.compaction.lag.ms at least that long, so a member that starts (or restarts)
// behind rebuilds the versions its snapshots need from the topic. A topic created by walhook has
// it (config.Config.ReferenceTopicConfigs); one with a lower value (created by hand, by an older
// walhook, or with a smaller reference_history) is raised, and when the principal may not alter
// topic configs the stage stops with the command to run.
func (s *Stage) ensureReferenceHistory(ctx context.Context, adm *kadm.Client, topics []string) error {
	if len(topics) == 0 {
		return nil
	}
	want := s.cfg.BubbleUp.ReferenceHistory.Milliseconds()
	rcs, err := describeTopicConfigs(ctx, adm, topics)
	if err != nil {
		return fmt.Errorf("pipeline: describe configs of the reference topics %v: %w", topics, err)
	}
	for _, rc := range rcs {
		got := int64(0)
		for _, c := range rc.Configs {
			if c.Key == minCompactionLag {
				got, _ = strconv.ParseInt(c.MaybeValue(), 10, 64)
			}
		}
		if got >= want {
			continue
		}
		v := strconv.FormatInt(want, 10)
		resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: minCompactionLag, Value: kadm.StringPtr(v)}}, rc.Name)
		if err == nil {
			var r kadm.AlterConfigsResponse
			if r, err = resp.On(rc.Name, nil); err == nil {
				err = r.Err
			}
		}
		if err != nil {
			return fmt.Errorf("pipeline: reference topic %s keeps superseded versions for %dms (%s), less than bubbleup.reference_history (%s), "+
				"and raising it failed: %w; run `kafka-configs.sh --alter --entity-type topics --entity-name %s --add-config %s=%s` "+
				"or grant walhook's principal ALTER_CONFIGS on the topic", rc.Name, got, minCompactionLag, s.cfg.BubbleUp.ReferenceHistory, err, rc.Name, minCompactionLag, v)
		}
		s.log.Info("raised the reference topic's history to bubbleup.reference_history",
			zap.String("topic", rc.Name), zap.String("config", minCompactionLag), zap.Int64("from_ms", got), zap.Int64("to_ms", want))
	}
	return nil
}
