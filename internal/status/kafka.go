package status

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/kafkaconn"
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

// size is the number of log positions topic retains.
func (o offsets) size(topic string) TopicSize {
	s := TopicSize{Topic: topic, Missing: o.missing(topic)}
	for p, end := range o.end[topic] {
		start, _ := o.start.Lookup(topic, p)
		s.Records += max(0, end.Offset-start.Offset)
	}
	return s
}

// markUnknown records that nothing Kafka holds could be read, and why, on every part that
// comes from Kafka.
func (r *Report) markUnknown(specs []groupSpec, dlq, inexact, reason string) {
	r.Groups = nil
	for _, g := range specs {
		r.Groups = append(r.Groups, Group{Stage: g.stage, Group: g.group, State: "unknown", Topics: []TopicLag{}, Unknown: reason})
	}
	r.DeadLetters = TopicSize{Topic: dlq, Unknown: reason}
	r.InexactReferences = TopicSize{Topic: inexact, Unknown: reason}
	r.OldestUndeliveredUnknown = reason
}

func (r *Report) collectKafka(ctx context.Context, cfg *config.Config, cl *kgo.Client, opts []kgo.Opt, o Options) {
	adm := kadm.NewClient(cl)
	specs := groups(cfg)
	dlq := cfg.Kafka.WebhookDeadLetterTopic()
	inexact := cfg.InexactReferenceTopic()
	topics := []string{dlq, inexact}
	for _, g := range specs {
		for _, t := range g.topics {
			if !slices.Contains(topics, t) {
				topics = append(topics, t)
			}
		}
	}
	pctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := kafkaconn.Ping(pctx, cl, cfg.Kafka.Brokers); err != nil {
		r.fail("%v", err)
		r.markUnknown(specs, dlq, inexact, fmt.Sprintf("Kafka not reachable: %v", pingReason(err)))
		return
	}
	var offs offsets
	var err error
	if offs.end, err = adm.ListEndOffsets(pctx, topics...); err == nil {
		offs.start, err = adm.ListStartOffsets(pctx, topics...)
	}
	if err != nil {
		r.fail("kafka: list offsets of %v: %v; check kafka.brokers / WALHOOK_BROKERS and the TLS/SASL settings", cfg.Kafka.Brokers, err)
		r.markUnknown(specs, dlq, inexact, fmt.Sprintf("listing offsets failed: %v", err))
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
	described, err := adm.DescribeGroups(pctx, names...)
	if err != nil {
		r.fail("kafka: describe groups %v: %v", names, err)
	}
	states := groupStates(pctx, adm, described)
	committed := map[string]kadm.OffsetResponses{}
	unknown := map[string]string{}
	for _, g := range specs {
		c, err := adm.FetchOffsets(pctx, g.group)
		if errors.Is(err, kerr.GroupIDNotFound) { // the stage never committed: everything is lag
			c, err = kadm.OffsetResponses{}, nil
		}
		if err != nil {
			r.fail("kafka: committed offsets of group %s: %v", g.group, err)
			unknown[g.group] = fmt.Sprintf("reading its committed offsets failed: %v", err)
			continue
		}
		committed[g.group] = c
	}

	// Read what lies behind every group, so lags count records and not transaction markers,
	// and the webhook group's first undelivered record gives the oldest undelivered event.
	spans := map[tp]int64{} // partition → lowest position of any group
	for _, g := range specs {
		c, ok := committed[g.group]
		if !ok {
			continue
		}
		for _, t := range g.topics {
			for p, end := range offs.end[t] {
				if at := position(t, p, offs, c); at < end.Offset {
					k := tp{t, p}
					if cur, seen := spans[k]; !seen || at < cur {
						spans[k] = at
					}
				}
			}
		}
	}
	read, readErr := readSpans(ctx, opts, spans, offs, o)
	if readErr != nil {
		r.fail("kafka: read the records behind the groups: %v", readErr)
	}

	retries := retryTopics(cfg)
	for _, g := range specs {
		state, ok := states[g.group]
		if !ok {
			state = "unknown"
		}
		grp := Group{Stage: g.stage, Group: g.group, State: state, Topics: []TopicLag{}}
		c, ok := committed[g.group]
		if !ok {
			grp.Unknown = unknown[g.group]
			r.Groups = append(r.Groups, grp)
			continue
		}
		for _, t := range g.topics {
			tl := topicLag(t, offs, c, read)
			grp.Lag += tl.Lag
			grp.Topics = append(grp.Topics, tl)
			if g.stage == "webhook" && slices.Contains(retries, t) {
				r.RetryBacklog = append(r.RetryBacklog, tl)
			}
		}
		r.Groups = append(r.Groups, grp)
		if g.stage == "webhook" {
			var undelivered []string
			for _, root := range cfg.Model.Roots {
				undelivered = append(undelivered, cfg.Kafka.SnapshotTopic(root))
			}
			r.oldestUndelivered(append(undelivered, retries...), offs, c, read, readErr, o)
		}
	}
	r.DeadLetters = offs.size(dlq)
	r.InexactReferences = offs.size(inexact)
}

// pingReason drops kafkaconn.Ping's advice, which the report's error line carries, keeping the
// cause for the line it stands beside.
func pingReason(err error) string {
	if u := errors.Unwrap(err); u != nil {
		return u.Error()
	}
	return err.Error()
}

// position is where a group resumes on a partition: its committed offset, else the log start.
func position(topic string, p int32, offs offsets, committed kadm.OffsetResponses) int64 {
	start, _ := offs.start.Lookup(topic, p)
	if c, ok := committed.Lookup(topic, p); ok && c.Err == nil && c.At >= 0 {
		return max(c.At, start.Offset)
	}
	return start.Offset
}

func topicLag(topic string, offs offsets, committed kadm.OffsetResponses, read map[tp]*span) TopicLag {
	tl := TopicLag{Topic: topic, Missing: offs.missing(topic), Partitions: len(offs.end[topic])}
	for p, end := range offs.end[topic] {
		at := position(topic, p, offs, committed)
		if at >= end.Offset {
			continue
		}
		n, exact := read[tp{topic, p}].behind(at, end.Offset)
		tl.Lag += n
		tl.Approximate = tl.Approximate || !exact
	}
	return tl
}

// oldestUndelivered is the oldest of the first records behind the webhook group on the
// snapshot and retry topics.
func (r *Report) oldestUndelivered(topics []string, offs offsets, committed kadm.OffsetResponses, read map[tp]*span, readErr error, o Options) {
	for _, t := range topics {
		for p, end := range offs.end[t] {
			at := position(t, p, offs, committed)
			if at >= end.Offset {
				continue
			}
			rec, known := read[tp{t, p}].first(at)
			if !known {
				reason := fmt.Sprintf("%s[%d] was not read as far as offset %d within %s (--timeout)", t, p, at, o.Timeout)
				if readErr != nil {
					reason = readErr.Error()
				}
				r.OldestUndeliveredUnknown = reason
				continue
			}
			if rec != nil && (r.OldestUndelivered == nil || rec.Timestamp.Before(r.OldestUndelivered.Timestamp)) {
				rec.Topic, rec.Partition = t, p
				r.OldestUndelivered = rec
			}
		}
	}
	if u := r.OldestUndelivered; u != nil {
		u.AgeSeconds = o.Now().Sub(u.Timestamp).Seconds()
	}
}

type tp struct {
	topic     string
	partition int32
}

// span is what was read of one partition from the lowest group position on: the offsets and
// timestamps of its records (transaction markers and aborted records left out), up to a limit.
type span struct {
	from    int64
	offsets []int64
	times   []time.Time
	// next is the offset after the last entry read, markers included.
	next int64
	// done: read up to the end offset, or up to the last stable offset with what follows in
	// a transaction still open (at lso).
	done bool
	lso  int64 // -1 unless reading stopped at an open transaction
	// truncated: stopped at the limit.
	truncated bool
}

// behind counts the records in [at, end) and whether the count is exact. What was not read
// (past the limit, the timeout, or in an open transaction) counts as the offset span.
func (s *span) behind(at, end int64) (int64, bool) {
	if s == nil {
		return end - at, false
	}
	i := sort.Search(len(s.offsets), func(i int) bool { return s.offsets[i] >= at })
	n := int64(len(s.offsets) - i)
	switch {
	case s.done && s.lso < 0:
		return n, true
	case s.done:
		return n + max(0, end-max(s.lso, at)), false
	}
	return n + max(0, end-max(s.next, at)), false
}

// first returns the first record at or after at; known is false when the span was not read
// far enough to say.
func (s *span) first(at int64) (rec *Record, known bool) {
	if s == nil {
		return nil, false
	}
	i := sort.Search(len(s.offsets), func(i int) bool { return s.offsets[i] >= at })
	if i < len(s.offsets) {
		return &Record{Offset: s.offsets[i], Timestamp: s.times[i].UTC()}, true
	}
	return nil, s.done
}

// readSpans reads every partition of spans from its offset to its end offset, committed records
// only, keeping control records so it knows where a partition stands when the last entries are
// transaction markers. It stops at o.Timeout; partitions not finished are approximate.
func readSpans(ctx context.Context, opts []kgo.Opt, spans map[tp]int64, offs offsets, o Options) (map[tp]*span, error) {
	out := map[tp]*span{}
	if len(spans) == 0 {
		return out, nil
	}
	want := map[string]map[int32]kgo.Offset{}
	for k, from := range spans {
		if want[k.topic] == nil {
			want[k.topic] = map[int32]kgo.Offset{}
		}
		want[k.topic][k.partition] = kgo.NewOffset().At(from)
		out[k] = &span{from: from, next: from, lso: -1}
	}
	cl, err := kgo.NewClient(append(slices.Clone(opts), kgo.ConsumePartitions(want), kgo.KeepControlRecords(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(200*time.Millisecond))...)
	if err != nil {
		return out, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	open := len(out)
	for open > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		var pause map[string][]int32
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			s := out[tp{p.Topic, p.Partition}]
			if s == nil || s.done || s.truncated {
				return
			}
			end, _ := offs.end.Lookup(p.Topic, p.Partition)
			for _, rec := range p.Records {
				s.next = rec.Offset + 1
				if rec.Attrs.IsControl() || rec.Offset >= end.Offset {
					continue
				}
				s.offsets = append(s.offsets, rec.Offset)
				s.times = append(s.times, rec.Timestamp)
			}
			switch {
			case s.next >= end.Offset:
				s.done = true
			case p.LastStableOffset >= 0 && p.LastStableOffset < end.Offset && s.next >= p.LastStableOffset:
				s.done, s.lso = true, p.LastStableOffset
			case int64(len(s.offsets)) >= o.CountLimit:
				s.truncated = true
			default:
				return
			}
			open--
			if pause == nil {
				pause = map[string][]int32{}
			}
			pause[p.Topic] = append(pause[p.Topic], p.Partition)
		})
		if pause != nil {
			cl.PauseFetchPartitions(pause)
		}
	}
	return out, nil
}

// groupStates is each described group's state. A group on the KIP-848 consumer protocol
// (kafka.group_protocol: consumer) is invisible to the classic DescribeGroups, which calls it
// Dead; such groups are described again with ConsumerGroupDescribe. A broker without that API
// (before Apache Kafka 4.0, kfake) leaves the classic answer.
func groupStates(ctx context.Context, adm *kadm.Client, classic kadm.DescribedGroups) map[string]string {
	states := make(map[string]string, len(classic))
	var again []string
	for name, d := range classic {
		states[name] = d.State
		if d.State == "Dead" || d.Err != nil {
			again = append(again, name)
		}
	}
	if len(again) == 0 {
		return states
	}
	described, err := adm.DescribeConsumerGroups(ctx, again...)
	if err != nil && len(described) == 0 {
		return states
	}
	for name, d := range described {
		if d.Err == nil && d.State != "" {
			states[name] = d.State
		}
	}
	return states
}
