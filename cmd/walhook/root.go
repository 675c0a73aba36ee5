package main

import (
	"github.com/spf13/cobra"
)

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "walhook",
		Short:         "Change-data-capture from PostgreSQL to versioned webhooks and compliance topics",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
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
	)
	return root
}
