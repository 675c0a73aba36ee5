package kafkaconn

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/kafkatest"
)

func TestGroupOptsDynamicWithoutInstanceID(t *testing.T) {
	if got, want := len(GroupOpts(config.Kafka{}, 10*time.Second)), len(GroupTimeouts(10*time.Second)); got != want {
		t.Fatalf("GroupOpts without instance_id: %d options, want GroupTimeouts' %d", got, want)
	}
	if got, want := len(GroupOpts(config.Kafka{InstanceID: "deliver-0"}, 10*time.Second)), len(GroupTimeouts(10*time.Second))+1; got != want {
		t.Fatalf("GroupOpts with instance_id: %d options, want %d", got, want)
	}
}

func TestTransactionalID(t *testing.T) {
	random := func() string { return "r4nd0m" }
	if got := TransactionalID(config.Kafka{}, "walhook.bubbleup", random); got != "walhook.bubbleup-r4nd0m" {
		t.Errorf("without instance_id: %q", got)
	}
	called := false
	if got := TransactionalID(config.Kafka{InstanceID: "bubbleup-1"}, "walhook.bubbleup", func() string { called = true; return "x" }); got != "walhook.bubbleup-bubbleup-1" || called {
		t.Errorf("with instance_id: %q (random called: %v)", got, called)
	}
}

// A stage process restarted with the same kafka.instance_id takes over its killed incarnation's
// membership at once: the group does not wait for the dead member's session (30 s here) nor for
// a rebalance timeout, and the live member keeps its partitions.
func TestGroupOptsStaticMemberReplacesItsKilledIncarnation(t *testing.T) {
	env := kafkatest.Start(t)
	topic := kafkatest.CreateTopic(t, env, "static", 4, nil)
	group := kafkatest.GroupName(t, "static")
	const session = 30 * time.Second
	adm := kadm.NewClient(kafkatest.Client(t, env))

	member := func(instance string) (*kgo.Client, func()) {
		opts := append([]kgo.Opt{kgo.SeedBrokers(env.Brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
			kgo.FetchMaxWait(250 * time.Millisecond)}, GroupOpts(config.Kafka{InstanceID: instance}, session)...)
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { // a member that does not poll still heartbeats; poll anyway, like a stage
			defer close(done)
			for ctx.Err() == nil {
				cl.PollFetches(ctx)
			}
		}()
		stop := func() { cancel(); <-done; cl.Close() }
		t.Cleanup(stop)
		return cl, stop
	}
	// members returns instance id -> member id of the Stable group with every partition assigned.
	members := func() (map[string]string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		gs, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return nil, err
		}
		g := gs[group]
		if g.Err != nil || g.State != "Stable" {
			return nil, fmt.Errorf("group %s: state %q, err %v", group, g.State, g.Err)
		}
		out := map[string]string{}
		var assigned []int32
		for _, m := range g.Members {
			if m.InstanceID == nil {
				return nil, fmt.Errorf("member %s has no instance id", m.MemberID)
			}
			out[*m.InstanceID] = m.MemberID
			if ca, ok := m.Assigned.AsConsumer(); ok {
				for _, tp := range ca.Topics {
					assigned = append(assigned, tp.Partitions...)
				}
			}
		}
		if slices.Sort(assigned); !slices.Equal(assigned, []int32{0, 1, 2, 3}) {
			return nil, fmt.Errorf("members %v own partitions %v, want 0-3", out, assigned)
		}
		return out, nil
	}
	want := func(instances ...string) func() error {
		return func() error {
			m, err := members()
			if err != nil {
				return err
			}
			if got := slices.Sorted(maps.Keys(m)); !slices.Equal(got, instances) {
				return fmt.Errorf("instances %v, want %v", got, instances)
			}
			return nil
		}
	}

	member("stage-b")
	_, killA := member("stage-a")
	kafkatest.Eventually(t, session, want("stage-a", "stage-b"))
	before, err := members()
	if err != nil {
		t.Fatal(err)
	}
	// A static member does not leave its group when it closes: to the broker this is a SIGKILL.
	killA()
	if now, err := members(); err != nil || now["stage-a"] != before["stage-a"] {
		t.Fatalf("after closing, the static stage-a should still be member %s: %v %v", before["stage-a"], now, err)
	}
	start := time.Now()
	member("stage-a")
	kafkatest.Eventually(t, session/2, func() error {
		if err := want("stage-a", "stage-b")(); err != nil {
			return err
		}
		after, err := members()
		if err != nil {
			return err
		}
		if after["stage-a"] == before["stage-a"] {
			return fmt.Errorf("stage-a is still the killed incarnation %s", before["stage-a"])
		}
		if after["stage-b"] != before["stage-b"] {
			return fmt.Errorf("stage-b changed from %s to %s", before["stage-b"], after["stage-b"])
		}
		return nil
	})
	t.Logf("restarted stage-a replaced its killed incarnation after %s (session timeout %s)", time.Since(start).Round(time.Millisecond), session)
}
