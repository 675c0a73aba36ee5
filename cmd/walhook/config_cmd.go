package main

import "github.com/spf13/cobra"

// newConfigCommand is `walhook config`; its subcommands are filled in by config_validate.go.
func newConfigCommand() *cobra.Command {
	return &cobra.Command{Use: "config", Short: "Check and show configuration"}
}
