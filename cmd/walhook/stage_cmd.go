package main

import "github.com/spf13/cobra"

// newStageCommand is the command of one stage: load --config, build the stage, run it next to the
// metrics endpoint until SIGINT/SIGTERM.
func newStageCommand(use, short, long string, build func(*process) (service, error)) *cobra.Command {
	var f processFlags
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := f.load()
			if err != nil {
				return err
			}
			if err := p.initTracing(cmd.Context(), use); err != nil {
				return err
			}
			svc, err := build(p)
			if err != nil {
				p.closeTracing()
				return err
			}
			return p.run(cmd.Context(), svc)
		},
	}
	f.register(cmd)
	return cmd
}
