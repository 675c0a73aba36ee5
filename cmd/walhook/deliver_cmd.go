package main

import (
	"github.com/spf13/cobra"

	"github.com/walhook/walhook/sinks/webhook"
)

func newDeliverCommand() *cobra.Command {
	return newStageCommand("deliver", "Deliver root snapshots to the subscribed webhooks",
		`deliver consumes the snapshot topics as a consumer group and sends each snapshot to every enabled
subscription of its tenant and event type, signed per Standard Webhooks, with retries through delay
topics, a dead-letter topic, per-endpoint limits and connect-time SSRF checks. Scale it by running
more processes with the same config.`,
		deliverService)
}

func deliverService(p *process) (service, error) {
	sink, err := webhook.New(p.cfg, webhook.WithLogger(p.log.Named("deliver")), webhook.WithRegisterer(p.reg), webhook.WithVersion(version), webhook.WithTracerProvider(p.tp))
	if err != nil {
		return service{}, err
	}
	return service{name: "deliver", run: sink.Run}, nil
}
