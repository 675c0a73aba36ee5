package apachekafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// probeTopic is the harness's own topic: a committed transaction to it proves the transaction
// coordinator usable.
const probeTopic = "__walhook_harness"

// waitUsable waits until every node listens and is in the metadata, a transaction commits and a
// group coordinator answers. Brokers create __transaction_state and __consumer_offsets on first
// use; doing it here keeps that out of the first test's deadline.
func (c *Cluster) waitUsable(ctx context.Context) error {
	for _, n := range c.nodes {
		if err := n.waitPort(ctx); err != nil {
			return err
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers()...))
	if err != nil {
		return fmt.Errorf("apachekafka: client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	steps := []struct {
		what string
		fn   func(context.Context) error
	}{
		{"every broker in the metadata", func(ctx context.Context) error { return c.allRegistered(ctx, adm) }},
		{"probe topic", func(ctx context.Context) error { return createProbeTopic(ctx, adm, min(len(c.nodes), 3)) }},
		{"a committed transaction", c.commitProbe},
		{"a group coordinator", func(ctx context.Context) error { return findCoordinator(ctx, adm) }},
	}
	for _, s := range steps {
		if err := retry(ctx, c.exitedEarly, s.fn); err != nil {
			return fmt.Errorf("apachekafka: waiting for %s: %w; node logs under %s", s.what, err, c.dir)
		}
	}
	return nil
}

func (c *Cluster) exitedEarly() error {
	for _, n := range c.nodes {
		if err := n.exitedEarly(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) allRegistered(ctx context.Context, adm *kadm.Client) error {
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return err
	}
	if len(md.Brokers) != len(c.nodes) {
		return fmt.Errorf("%d of %d brokers registered", len(md.Brokers), len(c.nodes))
	}
	if md.Controller < 0 {
		return errors.New("no active controller yet")
	}
	return nil
}

func createProbeTopic(ctx context.Context, adm *kadm.Client, rf int) error {
	resp, err := adm.CreateTopic(ctx, 1, int16(rf), nil, probeTopic)
	if err == nil {
		err = resp.Err
	}
	if errors.Is(err, kerr.TopicAlreadyExists) {
		return nil
	}
	return err
}

func (c *Cluster) commitProbe(ctx context.Context) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers()...),
		kgo.TransactionalID("walhook-harness-"+c.clusterID),
		kgo.DefaultProduceTopic(probeTopic),
		kgo.RequestTimeoutOverhead(5*time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		return err
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("ready")}).FirstErr(); err != nil {
		_ = cl.EndTransaction(ctx, kgo.TryAbort)
		return err
	}
	return cl.EndTransaction(ctx, kgo.TryCommit)
}

func findCoordinator(ctx context.Context, adm *kadm.Client) error {
	resp := adm.FindGroupCoordinators(ctx, "walhook-harness")
	for _, r := range resp {
		if r.Err != nil {
			return r.Err
		}
	}
	return nil
}

// waitServing waits until a restarted node listens and lists itself in the metadata it serves.
func (n *Node) waitServing(ctx context.Context) error {
	if err := n.waitPort(ctx); err != nil {
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.Addr()))
	if err != nil {
		return fmt.Errorf("apachekafka: client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	return retry(ctx, n.exitedEarly, func(ctx context.Context) error {
		md, err := adm.BrokerMetadata(ctx)
		if err != nil {
			return err
		}
		for _, b := range md.Brokers {
			if int(b.NodeID) == n.ID {
				return nil
			}
		}
		return fmt.Errorf("node %d not yet in the metadata", n.ID)
	})
}

// retry calls fn with a per-attempt deadline until it succeeds, fatal reports a dead JVM, or ctx
// ends; the error is fn's last.
func retry(ctx context.Context, fatal func() error, fn func(context.Context) error) error {
	wait := 50 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := fn(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ferr := fatal(); ferr != nil {
			return ferr
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}
