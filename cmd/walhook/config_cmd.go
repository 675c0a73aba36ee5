package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/walhook/walhook/config"
)

// newConfigCommand is `walhook config`: init, validate and show.
func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Write, check and show configuration"}
	cmd.AddCommand(newConfigInitCommand(), newConfigValidateCommand(), newConfigShowCommand())
	return cmd
}

func newConfigInitCommand() *cobra.Command {
	var path string
	var force bool
	cmd := &cobra.Command{
		Use:   "init [--config FILE] [--force]",
		Short: "Write a commented starter config (the demo model, every section) that validates as it is",
		Long: "init writes ./walhook.yaml, or --config FILE, with every section and its main keys explained and the\n" +
			"demo model. Edit the addresses and the model, then `walhook config validate --pg-url URL`.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				path = config.DefaultFile
			}
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if force {
				flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			if dir := filepath.Dir(path); dir != "." {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return fmt.Errorf("config init: %w", err)
				}
			}
			f, err := os.OpenFile(path, flags, 0o644)
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("config init: %s already exists; pass --force to overwrite it, or --config OTHER.yaml", path)
			}
			if err != nil {
				return fmt.Errorf("config init: %w", err)
			}
			_, werr := io.WriteString(f, config.Starter)
			if err := errors.Join(werr, f.Close()); err != nil {
				return fmt.Errorf("config init: write %s: %w", path, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s; check it with `walhook config validate --config %s`, and its model against your database with --pg-url URL\n", path, path)
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "file to write (default ./"+config.DefaultFile+")")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing file")
	return cmd
}

func newConfigValidateCommand() *cobra.Command {
	var f configFlags
	var checkDB bool
	cmd := &cobra.Command{
		Use:   "validate [--config FILE] [--pg-url URL | --check-db]",
		Short: "Validate a config file, and with --pg-url or --check-db its model against the database",
		Long: "Validate reports every problem in the file at once, one per line with its line number (or the\n" +
			"environment variable or flag the value came from).\n" +
			"With --pg-url (or --check-db, which uses postgres.url / WALHOOK_PG_URL) it also checks that\n" +
			"every table and column of the model exists and that keys are keys, and says what it checked.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runConfigValidate(cmd, f, checkDB || f.pgURL != "")
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&checkDB, "check-db", false, "check the model against the configured database")
	return cmd
}

func runConfigValidate(cmd *cobra.Command, f configFlags, checkDB bool) error {
	out := cmd.OutOrStdout()
	path, _, err := config.Find(f.path, os.LookupEnv)
	if err != nil {
		return err
	}
	cfg, err := config.LoadWith(path, config.Options{LookupEnv: os.LookupEnv, Overrides: f.overrides()})
	if err != nil {
		return reportProblems(out, err)
	}
	summary := fmt.Sprintf("%s: ok (%d roots, %d tables)", path, len(cfg.Model.Roots), len(cfg.Model.Tables()))
	if !checkDB {
		fmt.Fprintf(out, "%s; not checked against a database (add --pg-url URL or --check-db)\n", summary)
		return nil
	}
	report, err := config.CheckDatabaseReport(cmd.Context(), cfg, "")
	if err != nil {
		return reportProblems(out, err)
	}
	fmt.Fprintf(out, "%s; checked against PostgreSQL %s at %s (database %s, user %s): %d tables, %d columns and %d keys match the model; wal_level %s\n",
		summary, report.Version, report.Server, report.Database, report.User, report.Tables, report.Columns, report.Keys, report.WALLevel)
	for _, w := range report.Warnings {
		fmt.Fprintln(out, "warning:", w)
	}
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
	var f configFlags
	cmd := &cobra.Command{
		Use:   "show [--config FILE]",
		Short: "Print the effective config (file, environment overrides, flags and defaults) with secrets redacted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.load()
			if err != nil {
				return reportProblems(cmd.OutOrStdout(), err)
			}
			return writeYAML(cmd.OutOrStdout(), cfg.Redacted())
		},
	}
	f.register(cmd)
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
