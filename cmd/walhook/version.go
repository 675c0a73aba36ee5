package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

// versionString is what `walhook version` and `walhook --version` print: the version, the VCS
// revision the binary was built from (when known) and the Go toolchain.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "walhook " + version
	}
	rev := ""
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			rev = " " + s.Value
		}
	}
	return fmt.Sprintf("walhook %s%s (%s)", version, rev, bi.GoVersion)
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the walhook version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), versionString())
		},
	}
}
