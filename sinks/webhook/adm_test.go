package webhook_test

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

type adm struct{ c *kadm.Client }

func newAdm(cl *kgo.Client) adm { return adm{kadm.NewClient(cl)} }

func (a adm) create(ctx context.Context, name string, partitions int32) error {
	resp, err := a.c.CreateTopic(ctx, partitions, -1, nil, name)
	if err == nil {
		err = resp.Err
	}
	if errors.Is(err, kerr.TopicAlreadyExists) {
		return nil
	}
	return err
}
