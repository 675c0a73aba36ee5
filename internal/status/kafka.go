package status

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/config"
)

// groupSpec is a walhook consumer group and the topics its stage consumes.
type groupSpec struct {
	stage, group string
	topics       []string
}

// groups are walhook's consumer groups, derived from the config as the stages derive them.
func groups(cfg *config.Config) []groupSpec {
	k := cfg.Kafka
	var changes, snapshots, compliance []string
	for _, r := range cfg.Model.Roots {
		changes = append(changes, k.ChangeTopic(r))
		snapshots = append(snapshots, k.SnapshotTopic(r))
	}
	for _, r := range cfg.Compliance.SelectRoots(&cfg.Model) {
		compliance = append(compliance, k.SnapshotTopic(*r))
	}
	webhook := append(slices.Clone(snapshots), retryTopics(cfg)...)
	webhook = append(webhook, k.WebhookRequestTopic())
	return []groupSpec{
		{"bubbleup", cfg.BubbleUpGroup(), changes},
		{"webhook", cfg.WebhookGroup(), webhook},
		{"compliance", cfg.ComplianceGroup(), compliance},
	}
}

func retryTopics(cfg *config.Config) []string {
	var out []string
	for _, t := range cfg.Deliver.RetryTiers {
		out = append(out, cfg.Kafka.WebhookRetryTopic(t))
	}
	return out
}

// offsets are the log start and end of every topic status reads.
type offsets struct {
	start, end kadm.ListedOffsets
}

// missing reports whether topic does not exist (or has no partitions yet).
func (o offsets) missing(topic string) bool { return len(o.end[topic]) == 0 }

func (r *Report) collectKafka(ctx context.Context, cfg *config.Config, adm *kadm.Client, opts []kgo.Opt, o Options) {
	specs := groups(cfg)
	dlq := cfg.Kafka.WebhookDeadLetterTopic()
	topics := []string{dlq}
	for _, g := range specs {
		for _, t := range g.topics {
			if !slices.Contains(topics, t) {
				topics = append(topics, t)
			}
		}
	}
	var offs offsets
	var err error
	if offs.end, err = adm.ListEndOffsets(ctx, topics...); err == nil {
		offs.start, err = adm.ListStartOffsets(ctx, topics...)
	}
	if err != nil {
		r.fail("kafka: list offsets of %v: %v; check kafka.brokers / WALHOOK_BROKERS and the TLS/SASL settings", cfg.Kafka.Brokers, err)
		return
	}
	drop := func(l kadm.ListedOffsets) { // unknown topics are reported as missing, not as errors
		for t, ps := range l {
			for p, lo := range ps {
				if lo.Err != nil {
					if !errors.Is(lo.Err, kerr.UnknownTopicOrPartition) {
						r.fail("kafka: offsets of %s[%d]: %v", t, p, lo.Err)
					}
					delete(ps, p)
				}
			}
		}
	}
	drop(offs.end)
	drop(offs.start)

	names := make([]string, len(specs))
	for i, g := range specs {
		names[i] = g.group
	}
	described, err := adm.DescribeGroups(ctx, names...)
	if err != nil {
		r.fail("kafka: describe groups %v: %v", names, err)
	}
	var webhookCommitted kadm.OffsetResponses
	for _, g := range specs {
		committed, err := adm.FetchOffsets(ctx, g.group)
		if errors.Is(err, kerr.GroupIDNotFound) { // the stage never committed: everything is lag
			committed, err = kadm.OffsetResponses{}, nil
		}
		if err != nil {
			r.fail("kafka: committed offsets of group %s: %v", g.group, err)
			continue
		}
		grp := Group{Stage: g.stage, Group: g.group, State: described[g.group].State, Topics: []TopicLag{}}
		for _, t := range g.topics {
			tl := topicLag(t, offs, committed)
			grp.Lag += tl.Lag
			grp.Topics = append(grp.Topics, tl)
			if g.stage == "webhook" && slices.Contains(retryTopics(cfg), t) {
				r.RetryBacklog = append(r.RetryBacklog, tl)
			}
		}
		if g.stage == "webhook" {
			webhookCommitted = committed
		}
		r.Groups = append(r.Groups, grp)
	}
	r.DeadLetters = TopicSize{Topic: dlq, Missing: offs.missing(dlq)}
	for p, end := range offs.end[dlq] {
		start, _ := offs.start.Lookup(dlq, p)
		r.DeadLetters.Records += max(0, end.Offset-start.Offset)
	}
	if webhookCommitted != nil {
		var undelivered []string
		for _, r := range cfg.Model.Roots {
			undelivered = append(undelivered, cfg.Kafka.SnapshotTopic(r))
		}
		undelivered = append(undelivered, retryTopics(cfg)...)
		r.oldestUndelivered(ctx, opts, undelivered, offs, webhookCommitted, o)
	}
}

// position is where a group resumes on a partition: its committed offset, else the log start.
func position(topic string, p int32, offs offsets, committed kadm.OffsetResponses) int64 {
	start, _ := offs.start.Lookup(topic, p)
	if c, ok := committed.Lookup(topic, p); ok && c.Err == nil && c.At >= 0 {
		return max(c.At, start.Offset)
	}
	return start.Offset
}

func topicLag(topic string, offs offsets, committed kadm.OffsetResponses) TopicLag {
	tl := TopicLag{Topic: topic, Missing: offs.missing(topic), Partitions: len(offs.end[topic])}
	for p, end := range offs.end[topic] {
		tl.Lag += max(0, end.Offset-position(topic, p, offs, committed))
	}
	return tl
}

// oldestUndelivered reads the first uncommitted record of every partition of topics that has
// one and keeps the oldest. It reads committed records only; a partition whose only
// uncommitted entry is a transaction marker yields nothing and is waited for until o.Timeout.
func (r *Report) oldestUndelivered(ctx context.Context, opts []kgo.Opt, topics []string, offs offsets,
	committed kadm.OffsetResponses, o Options) {
	want := map[string]map[int32]kgo.Offset{}
	n := 0
	for _, t := range topics {
		for p, end := range offs.end[t] {
			at := position(t, p, offs, committed)
			if at >= end.Offset {
				continue
			}
			if want[t] == nil {
				want[t] = map[int32]kgo.Offset{}
			}
			want[t][p] = kgo.NewOffset().At(at)
			n++
		}
	}
	if n == 0 {
		return
	}
	cl, err := kgo.NewClient(append(slices.Clone(opts), kgo.ConsumePartitions(want),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(500*time.Millisecond))...)
	if err != nil {
		r.fail("kafka: reader of undelivered records: %v", err)
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	seen := map[string]map[int32]bool{}
	for got := 0; got < n; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		fs.EachRecord(func(rec *kgo.Record) {
			if seen[rec.Topic] == nil {
				seen[rec.Topic] = map[int32]bool{}
			}
			if seen[rec.Topic][rec.Partition] {
				return
			}
			seen[rec.Topic][rec.Partition] = true
			got++
			if r.OldestUndelivered == nil || rec.Timestamp.Before(r.OldestUndelivered.Timestamp) {
				r.OldestUndelivered = &Record{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Timestamp: rec.Timestamp.UTC()}
			}
		})
	}
	if u := r.OldestUndelivered; u != nil {
		u.AgeSeconds = o.Now().Sub(u.Timestamp).Seconds()
	}
}
