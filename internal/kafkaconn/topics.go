package kafkaconn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TopicSpec is a topic a stage needs.
type TopicSpec struct {
	// Name of the topic.
	Name string
	// Partitions when created; -1 uses the broker default.
	Partitions int32
	// ReplicationFactor when created; -1 uses the broker default.
	ReplicationFactor int16
	// Configs are topic configs set at creation ("cleanup.policy": "compact"). cleanup.policy is
	// also checked on an existing topic.
	Configs map[string]string
}

// EnsureTopics creates the topics of specs that do not exist and checks the cleanup.policy of
// those that do. It reports every problem at once.
func EnsureTopics(ctx context.Context, adm *kadm.Client, specs []TopicSpec) error {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return fmt.Errorf("kafka: list topics %v: %w; check that the brokers are reachable (kafka.brokers, WALHOOK_BROKERS) and that TLS/SASL settings match the cluster", names, err)
	}
	var errs, existing []error
	var have []string
	for _, s := range specs {
		d, ok := details[s.Name]
		// A listed topic without partitions is one the broker only half knows (kfake lists a
		// topic being created that way): creating it is safe, TOPIC_ALREADY_EXISTS is fine.
		if ok && d.Err == nil && len(d.Partitions) > 0 {
			have = append(have, s.Name)
			continue
		}
		if ok && d.Err != nil && !errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			errs = append(errs, fmt.Errorf("kafka: topic %q: %w", s.Name, d.Err))
			continue
		}
		existed, err := createTopic(ctx, adm, s)
		if err != nil {
			errs = append(errs, err)
		}
		if existed { // metadata lagged behind the topic (just created elsewhere)
			have = append(have, s.Name)
		}
	}
	if len(have) > 0 {
		existing = checkPolicies(ctx, adm, specs, have)
		limits := map[string]int{}
		for _, s := range specs {
			if v, err := strconv.Atoi(s.Configs["max.message.bytes"]); err == nil && slices.Contains(have, s.Name) {
				limits[s.Name] = v
			}
		}
		if err := checkRecordLimits(ctx, adm, limits); err != nil {
			existing = append(existing, err)
		}
	}
	if err := errors.Join(append(errs, existing...)...); err != nil {
		return err
	}
	return WaitForTopics(ctx, adm, names...)
}

// topicsVisibleTimeout bounds WaitForTopics when ctx has no earlier deadline.
const topicsVisibleTimeout = 30 * time.Second

// WaitForTopics waits until the metadata lists every topic of names with its partitions, each
// with a leader. Apache Kafka answers CreateTopics once the controller committed the topic, before
// the brokers' metadata caches know it: a stage that lists offsets or fetches right after creating
// a topic would otherwise see it missing.
func WaitForTopics(ctx context.Context, adm *kadm.Client, names ...string) error {
	ctx, cancel := context.WithTimeout(ctx, topicsVisibleTimeout)
	defer cancel()
	wait := 20 * time.Millisecond
	for {
		missing, err := invisibleTopics(ctx, adm, names)
		if err == nil && len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("not yet visible: %s", strings.Join(missing, ", "))
			}
			return fmt.Errorf("kafka: topics %v did not appear in the metadata with a leader for every partition: %w; "+
				"check the brokers' logs and that the topics exist (kafka-topics.sh --describe)", names, errors.Join(err, ctx.Err()))
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

func invisibleTopics(ctx context.Context, adm *kadm.Client, names []string) ([]string, error) {
	// kadm answers from franz-go's metadata cache (kept for MetadataMinAge, 5 s) unless asked
	// for authorized operations: a topic listed as unknown just before it was created would
	// stay unknown here for 5 s.
	details, err := adm.ListTopics(kadm.WithAuthorizedOps(ctx), names...)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, n := range names {
		d, ok := details[n]
		if !ok || d.Err != nil || len(d.Partitions) == 0 {
			missing = append(missing, n)
			continue
		}
		for _, p := range d.Partitions {
			if p.Leader < 0 || p.Err != nil {
				missing = append(missing, fmt.Sprintf("%s[%d]", n, p.Partition))
				break
			}
		}
	}
	if len(missing) > 0 {
		return missing, nil
	}
	// One broker's metadata listing a leader does not mean the leader knows it leads: on a
	// multi-broker cluster metadata reaches each broker on its own, and the leader answers
	// UNKNOWN_TOPIC_OR_PARTITION until it does. Asking every leader for its end offsets proves it.
	offs, err := adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		for _, p := range details[n].Partitions {
			if o, ok := offs.Lookup(n, p.Partition); !ok || o.Err != nil {
				missing = append(missing, fmt.Sprintf("%s[%d] (leader %d)", n, p.Partition, p.Leader))
				break
			}
		}
	}
	return missing, nil
}

// createTopic creates s; existed reports that the topic was there already.
func createTopic(ctx context.Context, adm *kadm.Client, s TopicSpec) (existed bool, err error) {
	configs := make(map[string]*string, len(s.Configs))
	for k, v := range s.Configs {
		configs[k] = &v
	}
	resp, err := adm.CreateTopic(ctx, s.Partitions, s.ReplicationFactor, configs, s.Name)
	if err == nil {
		err = resp.Err
	}
	if errors.Is(err, kerr.TopicAlreadyExists) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("kafka: create topic %q (partitions %d, replication factor %d, configs %v): %w; "+
			"create it by hand or grant walhook's principal CREATE on the cluster", s.Name, s.Partitions, s.ReplicationFactor, s.Configs, err)
	}
	return false, nil
}

// checkPolicies reports an existing topic whose cleanup.policy differs from its spec: a change
// topic that is compacted loses changes, a state topic that is not compacted grows forever.
func checkPolicies(ctx context.Context, adm *kadm.Client, specs []TopicSpec, have []string) []error {
	rcs, err := adm.DescribeTopicConfigs(ctx, have...)
	if err != nil {
		return []error{fmt.Errorf("kafka: describe configs of %v: %w", have, err)}
	}
	got := map[string]string{}
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if c.Key == "cleanup.policy" {
				got[rc.Name] = c.MaybeValue()
			}
		}
	}
	var errs []error
	for _, s := range specs {
		want, ok := s.Configs["cleanup.policy"]
		g, exists := got[s.Name]
		if !ok || !exists || samePolicy(want, g) {
			continue
		}
		errs = append(errs, fmt.Errorf("kafka: topic %q has cleanup.policy=%q, walhook needs %q: "+
			"run `kafka-configs.sh --alter --entity-type topics --entity-name %s --add-config cleanup.policy=%s` "+
			"or delete the topic so walhook recreates it", s.Name, g, want, s.Name, want))
	}
	return errs
}

func samePolicy(a, b string) bool {
	norm := func(s string) string {
		p := strings.Split(strings.ReplaceAll(s, " ", ""), ",")
		sort.Strings(p)
		return strings.Join(p, ",")
	}
	return norm(a) == norm(b)
}

// Ping checks that at least one of cfg's seed brokers answers, with an error naming the brokers
// and the fix when none does.
func Ping(ctx context.Context, cl *kgo.Client, brokers []string) error {
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafka: no broker of %v answered: %w; check kafka.brokers / WALHOOK_BROKERS, "+
			"that the brokers run and are reachable from here, and that kafka.tls and kafka.sasl match the listener", brokers, err)
	}
	return nil
}
