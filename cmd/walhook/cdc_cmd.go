package main

import (
	"github.com/spf13/cobra"

	"github.com/walhook/walhook/cdc"
)

func newCDCCommand() *cobra.Command {
	var f processFlags
	var manageIdentity bool
	cmd := &cobra.Command{
		Use:   "cdc",
		Short: "Stream committed PostgreSQL changes of the model's tables into Kafka change topics",
		Long: `cdc reads the logical replication slot (pgoutput) and writes one Avro change record per row change
to the change topic of its root, keyed by the root key, with a transaction-end marker per root per
source transaction. It confirms an LSN to PostgreSQL only after Kafka acknowledged every record up to
it. Run one per slot: a second process waits as a standby and takes over when the first dies.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := f.load()
			if err != nil {
				return err
			}
			if manageIdentity {
				p.cfg.CDC.ManageReplicaIdentity = true
			}
			svc, err := cdcService(p)
			if err != nil {
				return err
			}
			return p.run(cmd.Context(), svc)
		},
	}
	f.register(cmd)
	cmd.AddCommand(newCDCResnapshotCommand())
	cmd.Flags().BoolVar(&manageIdentity, "manage-replica-identity", false,
		"set REPLICA IDENTITY FULL on subordinate tables whose deletes would otherwise lack the parent key")
	return cmd
}

func cdcService(p *process) (service, error) {
	stage, err := cdc.New(p.cfg, cdc.WithLogger(p.log.Named("cdc")), cdc.WithRegisterer(p.reg))
	if err != nil {
		return service{}, err
	}
	return service{name: "cdc", run: stage.Run}, nil
}
