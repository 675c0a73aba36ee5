package main

import (
	"github.com/spf13/cobra"

	"github.com/walhook/walhook/cdc"
)

func newCDCCommand() *cobra.Command {
	var manageIdentity bool
	cmd := newStageCommand("cdc", "Stream committed PostgreSQL changes of the model's tables into Kafka change topics",
		`cdc reads the logical replication slot (pgoutput) and writes one Avro change record per row change
to the change topic of its root, keyed by the root key, with a transaction-end marker per root per
source transaction. It confirms an LSN to PostgreSQL only after Kafka acknowledged every record up to
it. Run one per slot: a second process waits as a standby and takes over when the first dies.`,
		func(p *process) (service, error) {
			if manageIdentity {
				p.cfg.CDC.ManageReplicaIdentity = true
			}
			return cdcService(p)
		})
	cmd.Flags().BoolVar(&manageIdentity, "manage-replica-identity", false,
		"set REPLICA IDENTITY FULL on subordinate tables whose deletes would otherwise lack the parent key")
	cmd.AddCommand(newCDCResnapshotCommand())
	return cmd
}

func cdcService(p *process) (service, error) {
	stage, err := cdc.New(p.cfg, cdc.WithLogger(p.log.Named("cdc")), cdc.WithRegisterer(p.reg))
	if err != nil {
		return service{}, err
	}
	return service{name: "cdc", run: stage.Run}, nil
}
