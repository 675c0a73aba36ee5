package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "walhook",
		Short: "Change-data-capture from PostgreSQL to versioned webhooks and compliance topics",
		Long: `walhook turns committed PostgreSQL changes into versioned snapshots of root entities and delivers them
to signed webhooks and compliance Kafka topics.

Every command that reads the config finds it the same way: --config FILE, else $WALHOOK_CONFIG, else
./walhook.yaml. WALHOOK_PG_URL, WALHOOK_BROKERS and WALHOOK_REGISTRY_URL (and the flags --pg-url,
--brokers, --registry) override the file's addresses. After ` + "`walhook dev`" + `, ` + "`. .walhook/dev.env`" + ` sets them all.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate(versionString() + "\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (see `%s --help`)", err, c.CommandPath())
	})
	root.AddCommand(
		newVersionCommand(),
		newConfigCommand(),
		newDevCommand(),
		newCDCCommand(),
		newBubbleupCommand(),
		newDeliverCommand(),
		newComplyCommand(),
		newTailCommand(),
		newStatusCommand(),
		newHooksCommand(),
		newDLQCommand(),
		newAPICommand(),
		newCatalogCommand(),
	)
	return root
}
