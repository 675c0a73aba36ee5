package compliance

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/deadletter"
	"github.com/walhook/walhook/internal/kafkaconn"
)

// ensureTopics creates the compliance topics that are missing (and the schema topic without a
// registry) and reports every existing one whose cleanup.policy is wrong: a compacted log topic
// would lose versions, a latest topic that is not compacted grows forever.
func (s *Sink) ensureTopics(ctx context.Context, admin *kgo.Client) error {
	k, c := s.cfg.Kafka, s.cfg.Compliance
	specs := []kafkaconn.TopicSpec{deadletter.TopicSpec(s.cfg, config.StageCompliance)}
	for _, rs := range s.roots {
		specs = append(specs,
			kafkaconn.TopicSpec{Name: rs.log.name, Partitions: c.Log.Partitions, ReplicationFactor: k.ReplicationFactor,
				Configs: map[string]string{"cleanup.policy": "delete", "retention.ms": c.Log.RetentionMs()}},
			kafkaconn.TopicSpec{Name: rs.latest.name, Partitions: c.Latest.Partitions, ReplicationFactor: k.ReplicationFactor,
				Configs: map[string]string{"cleanup.policy": "compact"}})
	}
	if s.reg == nil && s.srClient == nil && s.cfg.SchemaRegistry.URL == "" {
		specs = append(specs, kafkaconn.TopicSpec{Name: kafkaconn.SchemaTopic(k), Partitions: 1, ReplicationFactor: k.ReplicationFactor,
			Configs: map[string]string{"cleanup.policy": "compact"}})
	}
	if err := kafkaconn.EnsureTopics(ctx, kadm.NewClient(admin), kafkaconn.WithRecordLimits(k, specs)); err != nil {
		return fmt.Errorf("compliance: %w", err)
	}
	return nil
}
