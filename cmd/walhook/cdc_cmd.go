package main

import (
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

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
			softMemoryLimit(p)
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
	stage, err := cdc.New(p.cfg, cdc.WithLogger(p.log.Named("cdc")), cdc.WithRegisterer(p.reg), cdc.WithTracerProvider(p.tp))
	if err != nil {
		return service{}, err
	}
	return service{name: "cdc", run: stage.Run}, nil
}

// cdcSoftMemoryLimit is the Go heap's soft limit for `walhook cdc` when GOMEMLIMIT is unset: a
// transaction touching half a million roots keeps ~110 MiB live, and without a limit the GC lets
// the heap double before collecting, past the 256 MiB the stage is sized for.
const cdcSoftMemoryLimit = 200 << 20

func softMemoryLimit(p *process) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(cdcSoftMemoryLimit)
	p.log.Info("GOMEMLIMIT is unset: using a soft heap limit", zap.Int("bytes", cdcSoftMemoryLimit))
}
