package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/internal/kafkaconn"
	"github.com/walhook/walhook/pipeline"
)

func newBubbleupCommand() *cobra.Command {
	return newStageCommand("bubbleup", "Fold row changes into one versioned snapshot per root per source transaction",
		`bubbleup consumes the change topics as a consumer group, keeps each root's state (root row,
subordinate rows, version, last applied LSN) in a local store backed by a compacted changelog topic,
and at the end of each source transaction emits one complete snapshot of every root it touched:
created, updated or deleted, version n+1, exactly once (Kafka transactions). Scale it by running
more processes with the same config.`,
		bubbleupService)
}

func bubbleupService(p *process) (service, error) {
	// The schema registry client (or the schema topic reader) lives as long as the stage.
	opts, err := kafkaconn.Opts(p.cfg.Kafka)
	if err != nil {
		return service{}, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return service{}, fmt.Errorf("bubbleup: kafka client: %w", err)
	}
	reg, err := kafkaconn.AvroRegistry(p.cfg, cl)
	if err != nil {
		cl.Close()
		return service{}, err
	}
	stage, err := pipeline.New(p.cfg, pipeline.WithLogger(p.log.Named("bubbleup")), pipeline.WithRegisterer(p.reg), pipeline.WithRegistry(reg), pipeline.WithTracerProvider(p.tp))
	if err != nil {
		cl.Close()
		return service{}, err
	}
	return service{name: "bubbleup", run: func(ctx context.Context) error {
		defer cl.Close()
		return stage.Run(ctx)
	}}, nil
}
