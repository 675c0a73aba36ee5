package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/walhook/walhook/cdc"
)

// newCDCResnapshotCommand is `walhook cdc resnapshot`: it asks the running walhook cdc (or the
// next one to start on the slot) to capture tables again as reads while streaming continues.
func newCDCResnapshotCommand() *cobra.Command {
	var f processFlags
	var tables []string
	var all bool
	cmd := &cobra.Command{
		Use:   "resnapshot",
		Short: "Re-capture one or more tables of the model as read changes while streaming continues",
		Long: `resnapshot writes a request through the replication slot (pg_logical_emit_message with prefix
walhook.snapshot.request). The walhook cdc reading the slot records it durably and reads the table again
in primary-key chunks between watermarks, writing every row as a "read" change keyed like a streamed
one; streamed changes are neither lost nor repeated meanwhile. Progress shows in the cdc logs and in
walhook_cdc_snapshot_rows_total / walhook_cdc_snapshot_remaining_tables. A request made while no cdc
runs is picked up at its next start.`,
		Example: `  walhook cdc resnapshot --config walhook.yaml --table incident.timeline
  walhook cdc resnapshot --config walhook.yaml --all`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := f.load()
			if err != nil {
				return err
			}
			if all == (len(tables) > 0) {
				return fmt.Errorf("name the tables with --table (schema-qualified, repeatable) or use --all, not both; model tables: %v",
					p.cfg.Model.Tables())
			}
			if all {
				tables = p.cfg.Model.Tables()
			}
			lsns, err := cdc.RequestResnapshot(cmd.Context(), p.cfg, tables...)
			for i, lsn := range lsns {
				fmt.Fprintf(cmd.OutOrStdout(), "resnapshot of %s requested at LSN %s on slot %s\n", tables[i], lsn, p.cfg.Postgres.Slot)
			}
			return err
		},
	}
	f.register(cmd)
	cmd.Flags().StringArrayVar(&tables, "table", nil, "schema-qualified table of the model to re-capture (repeatable)")
	cmd.Flags().BoolVar(&all, "all", false, "re-capture every table of the model")
	return cmd
}
