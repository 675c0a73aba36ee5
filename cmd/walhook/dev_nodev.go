//go:build nodev

package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// errNoDev: this binary was built for production (the container image): it links no embedded
// PostgreSQL, test broker or schema registry, so the demo is not in it.
var errNoDev = errors.New("walhook dev is not in this binary: it was built with -tags nodev, as the container image " +
	"and `make build` are, which ship no embedded PostgreSQL or test broker; run the demo from a source checkout " +
	"with `make run`, or build a binary that has it with `go build ./cmd/walhook`")

func newDevCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "dev",
		Short:              "The embedded demo (not in this build: see `walhook dev`)",
		DisableFlagParsing: true, // whatever flags are given, say why dev is missing
		RunE:               func(*cobra.Command, []string) error { return errNoDev },
	}
}
