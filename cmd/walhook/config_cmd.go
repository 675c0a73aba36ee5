package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/walhook/walhook/config"
)

// newConfigCommand is `walhook config`: validate and show.
func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Check and show configuration"}
	cmd.AddCommand(newConfigValidateCommand(), newConfigShowCommand())
	return cmd
}

func newConfigValidateCommand() *cobra.Command {
	var file, pgURL string
	var checkDB bool
	cmd := &cobra.Command{
		Use:   "validate --config FILE [--pg-url URL | --check-db]",
		Short: "Validate a config file, and with --pg-url or --check-db its model against the database",
		Long: "Validate reports every problem in the file at once, one per line with its line number.\n" +
			"With --pg-url (or --check-db, which uses postgres.url / WALHOOK_PG_URL) it also checks that\n" +
			"every table and column of the model exists and that keys are keys.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runConfigValidate(cmd, file, pgURL, checkDB || pgURL != "")
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "config file (YAML)")
	cmd.Flags().StringVar(&pgURL, "pg-url", "", "check the model against this database")
	cmd.Flags().BoolVar(&checkDB, "check-db", false, "check the model against the configured database")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func runConfigValidate(cmd *cobra.Command, file, pgURL string, checkDB bool) error {
	out := cmd.OutOrStdout()
	cfg, err := config.Load(file)
	if err == nil && checkDB {
		err = config.CheckDatabase(cmd.Context(), cfg, pgURL)
	}
	if err != nil {
		return reportProblems(out, err)
	}
	fmt.Fprintf(out, "%s: ok (%d roots, %d tables)\n", file, len(cfg.Model.Roots), len(cfg.Model.Tables()))
	return nil
}

// reportProblems prints a validation error's problems and exits 1 without walhook's own error
// line, which would repeat them; other errors (an unreadable file) are returned as they are.
func reportProblems(out io.Writer, err error) error {
	var ve *config.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	fmt.Fprintln(out, ve.Error())
	return exitError{code: 1}
}

func newConfigShowCommand() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "show --config FILE",
		Short: "Print the effective config (file, environment overrides and defaults) with secrets redacted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(file)
			if err != nil {
				return reportProblems(cmd.OutOrStdout(), err)
			}
			return writeYAML(cmd.OutOrStdout(), cfg.Redacted())
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "config file (YAML)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func writeYAML(w io.Writer, v any) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	return enc.Close()
}
