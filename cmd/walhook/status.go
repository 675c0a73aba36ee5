package main

import (
	"encoding/json"
	"time"

	"github.com/spf13/cobra"

	"github.com/walhook/walhook/internal/status"
)

// newStatusCommand is `walhook status`: one screen saying where a running deployment is behind.
// Exit status: 0 fine, 1 something could not be read, 2 a threshold is crossed.
func newStatusCommand() *cobra.Command {
	var f configFlags
	var asJSON bool
	var timeout time.Duration
	th := status.NoThresholds
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the slot's lag, consumer-group lag, dead letters, retries, disabled subscriptions and the oldest undelivered event",
		Long: `status reads PostgreSQL and Kafka (never writes) and shows: the replication slot and its lag in
bytes and time; each walhook consumer group's lag per topic; the dead-letter topic's size and the
retry topics' backlogs; disabled subscriptions; and the oldest snapshot or retry record the webhook
group has not committed. With a --max-* flag it exits 2 when that limit is crossed, so it can back
an alert or a deployment check; it exits 1 when PostgreSQL or Kafka cannot be read.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.load()
			if err != nil {
				return reportProblems(cmd.OutOrStdout(), err)
			}
			cfg.Compliance.SetDefaults(cfg.Kafka)
			r, err := status.Collect(cmd.Context(), cfg, status.Options{Timeout: timeout})
			if err != nil {
				return err
			}
			crossed := r.Check(th)
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				err = enc.Encode(r)
			} else {
				err = r.WriteText(out)
			}
			switch {
			case err != nil:
				return err
			case crossed:
				return exitError{code: 2}
			case len(r.Errors) > 0:
				return exitError{code: 1}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	f.register(cmd)
	fl.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fl.DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for PostgreSQL and Kafka to answer each read")
	fl.Int64Var(&th.MaxSlotLagBytes, "max-slot-lag-bytes", -1, "exit 2 when the slot holds back more WAL than this (bytes; -1: not checked)")
	fl.Int64Var(&th.MaxConsumerLag, "max-consumer-lag", -1, "exit 2 when a walhook group is more records behind on a topic (-1: not checked)")
	fl.Int64Var(&th.MaxDLQ, "max-dlq", -1, "exit 2 when the dead-letter topic holds more records (-1: not checked)")
	return cmd
}
