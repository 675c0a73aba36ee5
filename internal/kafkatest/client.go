package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Client returns a kgo client seeded with env's brokers, closed by t.Cleanup.
// opts are appended after the seeds, so they can override anything.
func Client(t testing.TB, env *Env, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	all := append([]kgo.Opt{kgo.SeedBrokers(env.Brokers...), kgo.FetchMaxWait(250 * time.Millisecond)}, opts...)
	cl, err := kgo.NewClient(all...)
	if err != nil {
		t.Fatalf("kafkatest: new kafka client for %v: %v", env.Brokers, err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// CreateTopic creates a topic named TopicName(t, base) with the given
// partitions (-1 for the broker default) and configs, and returns its name.
func CreateTopic(t testing.TB, env *Env, base string, partitions int32, configs map[string]*string) string {
	t.Helper()
	name := TopicName(t, base)
	adm := kadm.NewClient(Client(t, env))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, partitions, -1, configs, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("kafkatest: create topic %q: %v", name, err)
	}
	return name
}

// SetTopicConfig sets one config of topic, incrementally (a plain AlterConfigs would reset the
// topic's other settings), failing the test when the broker refuses it.
func SetTopicConfig(t testing.TB, adm *kadm.Client, topic, name, value string) {
	t.Helper()
	resp, err := adm.AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Op: kadm.SetConfig, Name: name, Value: &value}}, topic)
	if err == nil {
		_, err = resp.On(topic, nil)
	}
	if err != nil {
		t.Fatalf("kafkatest: set %s of %s to %s: %v", name, topic, value, err)
	}
}

// ConsumeAll reads topic from its start with a new client (extra opts, such
// as kgo.FetchIsolationLevel(kgo.ReadCommitted()), are appended) until it has
// at least n records, failing the test at the deadline. It may return more
// than n when they arrive in the same fetch.
func ConsumeAll(t testing.TB, env *Env, topic string, n int, timeout time.Duration, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	all := append([]kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)
	return Poll(t, Client(t, env, all...), n, timeout)
}

// Poll polls cl until it returned at least n records, failing the test at the
// deadline with what it got.
func Poll(t testing.TB, cl *kgo.Client, n int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("kafkatest: got %d of %d records within %v", len(recs), n, timeout)
		}
		var errs []error
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", topic, p, err))
			}
		})
		if len(errs) > 0 {
			t.Fatalf("kafkatest: fetch after %d of %d records: %v", len(recs), n, errors.Join(errs...))
		}
		recs = append(recs, fs.Records()...)
	}
	return recs
}

// Eventually calls fn until it returns nil, failing the test with fn's last
// error when timeout passes. The wait between calls grows from 10ms to 250ms.
func Eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 10 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("kafkatest: condition not met within %v: %v", timeout, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 250*time.Millisecond)
	}
}
