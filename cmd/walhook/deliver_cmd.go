package main

import (
	"github.com/spf13/cobra"

	"github.com/walhook/walhook/sinks/webhook"
)

func newDeliverCommand() *cobra.Command {
	var f processFlags
	cmd := &cobra.Command{
		Use:   "deliver",
		Short: "Deliver root snapshots to the subscribed webhooks",
		Long: `deliver consumes the snapshot topics as a consumer group and sends each snapshot to every enabled
subscription of its tenant and event type, signed per Standard Webhooks, with retries through delay
topics, a dead-letter topic, per-endpoint limits and connect-time SSRF checks. Scale it by running
more processes with the same config.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := f.load()
			if err != nil {
				return err
			}
			svc, err := deliverService(p)
			if err != nil {
				return err
			}
			return p.run(cmd.Context(), svc)
		},
	}
	f.register(cmd)
	return cmd
}

func deliverService(p *process) (service, error) {
	sink, err := webhook.New(p.cfg, webhook.WithLogger(p.log.Named("deliver")), webhook.WithRegisterer(p.reg), webhook.WithVersion(version))
	if err != nil {
		return service{}, err
	}
	return service{name: "deliver", run: sink.Run}, nil
}
