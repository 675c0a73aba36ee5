package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/walhook/walhook/internal/api"
)

// newAPICommand is `walhook api`: the HTTP admin API, the event catalog and the web console;
// `walhook api key` manages the keys it accepts.
func newAPICommand() *cobra.Command {
	cmd := newStageCommand("api", "Serve the HTTP admin API, the event catalog and the web console",
		`api serves, on api.listen, the HTTP JSON API described by /openapi.json (applications, subscriptions,
deliveries and their attempts, re-trigger, replay, dead letters, the event catalog, the pipeline
status) and the web console at /. Every request carries an API key: an operator key sees everything,
a tenant token only its tenant's data. `+"`walhook api key create`"+` makes them; docs/api.md explains the rest.`,
		apiService)
	cmd.AddCommand(newAPIKeyCommand())
	return cmd
}

func apiService(p *process) (service, error) {
	return service{name: "api", run: func(ctx context.Context) error {
		svc, err := startAPI(ctx, p)
		if err != nil {
			return err
		}
		return svc.run(ctx)
	}}, nil
}

// startAPI connects the API to PostgreSQL and Kafka and binds api.listen now, so that whoever
// calls it next (walhook dev, before it says it is ready) can rely on the API answering; the
// returned service serves until its context is done and then releases both.
func startAPI(ctx context.Context, p *process) (service, error) {
	s, err := api.New(ctx, p.cfg, api.WithLogger(p.log.Named("api")), api.WithVersion(version))
	if err != nil {
		return service{}, err
	}
	ln, err := net.Listen("tcp", p.cfg.API.Listen)
	if err != nil {
		s.Close()
		return service{}, fmt.Errorf("api: listen on %s (api.listen): %w", p.cfg.API.Listen, err)
	}
	return service{name: "api", run: func(ctx context.Context) error {
		defer s.Close()
		return s.Serve(ctx, ln)
	}}, nil
}

func newAPIKeyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Create, list and revoke API keys (operator keys and tenant tokens)",
		Long: `key manages hook.api_key, where keys are stored as their SHA-256: a key is shown once, when it is
created. An operator key (whk_…) sees and changes everything; a tenant token (wht_…, --tenant T) sees
and changes only tenant T's applications, subscriptions, deliveries and dead letters.`,
		Example: `  walhook api key create --name ci
  walhook api key create --name acme-portal --tenant acme --expires-in 720h
  walhook api key list
  walhook api key revoke --id 3`,
	}
	cmd.AddCommand(apiKeyCreate(), apiKeyList(), apiKeyRevoke())
	return cmd
}

// keysCommand builds a subcommand whose run gets the open key store.
func keysCommand(c *cobra.Command, run func(*cobra.Command, *api.Keys) error) *cobra.Command {
	var f configFlags
	c.Args = cobra.NoArgs
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, _, err := f.loadIfAny()
		if err != nil {
			return err
		}
		k, err := api.OpenKeys(cmd.Context(), cfg.Postgres.URL)
		if err != nil {
			return err
		}
		defer k.Close()
		return run(cmd, k)
	}
	f.register(c)
	return c
}

func apiKeyCreate() *cobra.Command {
	var name, tenant string
	var ttl time.Duration
	cmd := keysCommand(&cobra.Command{Use: "create --name N [--tenant T] [--expires-in D]",
		Short: "Make a key and print it (only now: it is stored hashed)"},
		func(cmd *cobra.Command, k *api.Keys) error {
			secret, key, err := k.Create(cmd.Context(), name, tenant, ttl)
			if err != nil {
				return err
			}
			role := "operator"
			if key.Tenant != "" {
				role = "tenant " + key.Tenant
			}
			fmt.Fprintf(cmd.OutOrStdout(), "id: %d\nname: %s\nrole: %s\nkey: %s\n", key.ID, key.Name, role, secret)
			return nil
		})
	cmd.Flags().StringVar(&name, "name", "", "who uses the key (ci, acme-portal)")
	cmd.Flags().StringVar(&tenant, "tenant", "", "make a tenant token that sees only this tenant (default: an operator key)")
	cmd.Flags().DurationVar(&ttl, "expires-in", 0, "expire the key after this long (default: never)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func apiKeyList() *cobra.Command {
	return keysCommand(&cobra.Command{Use: "list", Short: "List the keys (never the keys themselves)"},
		func(cmd *cobra.Command, k *api.Keys) error {
			keys, err := k.List(cmd.Context())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tNAME\tPREFIX\tTENANT\tCREATED\tEXPIRES\tREVOKED\tLAST USED")
			when := func(t *time.Time) string {
				if t == nil {
					return "-"
				}
				return t.UTC().Format(time.RFC3339)
			}
			for _, key := range keys {
				tenant := key.Tenant
				if tenant == "" {
					tenant = "(operator)"
				}
				fmt.Fprintf(w, "%d\t%s\t%s…\t%s\t%s\t%s\t%s\t%s\n", key.ID, key.Name, key.Prefix, tenant,
					key.CreatedAt.UTC().Format(time.RFC3339), when(key.ExpiresAt), when(key.RevokedAt), when(key.LastUsedAt))
			}
			return w.Flush()
		})
}

func apiKeyRevoke() *cobra.Command {
	var id int64
	cmd := keysCommand(&cobra.Command{Use: "revoke --id N", Short: "Revoke a key at once"},
		func(cmd *cobra.Command, k *api.Keys) error {
			key, err := k.Revoke(cmd.Context(), id)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %d (%s)\n", key.ID, key.Name)
			return nil
		})
	cmd.Flags().Int64Var(&id, "id", 0, "key id (walhook api key list)")
	_ = cmd.MarkFlagRequired("id")
	return cmd
}

// newCatalogCommand is `walhook catalog`: the event catalog.
func newCatalogCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "catalog",
		Short: "The event catalog: JSON Schemas of the webhook payloads and an AsyncAPI document of webhooks and topics",
	}
	var f configFlags
	var out, format string
	export := &cobra.Command{
		Use:   "export [--output FILE] [--format json|yaml]",
		Short: "Write the AsyncAPI 3 document of the model's webhooks and Kafka topics",
		Long: `export derives, from the model and PostgreSQL's column types, the JSON Schema of every event's payload
(bare, old_new and envelope forms) and writes an AsyncAPI 3.0 document describing both ways to
subscribe: the signed webhooks (headers, signature, payload) and the snapshot and compliance topics
(key, headers, the Avro value schema as registered, the consumer settings such as read_committed).
It reads PostgreSQL and, when configured, the schema registry.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "json" && format != "yaml" {
				return fmt.Errorf("--format %q: use json or yaml", format)
			}
			cfg, err := f.load()
			if err != nil {
				return err
			}
			doc, err := api.Export(cmd.Context(), cfg, version)
			if err != nil {
				return err
			}
			var data []byte
			if format == "yaml" {
				// Through JSON, so the YAML has the document's keys and plain values.
				j, err := json.Marshal(doc)
				if err != nil {
					return err
				}
				var v any
				if err := yaml.Unmarshal(j, &v); err != nil {
					return err
				}
				if data, err = yaml.Marshal(v); err != nil {
					return err
				}
			} else if data, err = json.MarshalIndent(doc, "", "  "); err != nil {
				return err
			} else {
				data = append(data, '\n')
			}
			if out == "" || out == "-" {
				_, err = cmd.OutOrStdout().Write(data)
				return err
			}
			if err := os.WriteFile(out, data, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s (%s bytes)\n", out, strconv.Itoa(len(data)))
			return nil
		},
	}
	f.register(export)
	export.Flags().StringVarP(&out, "output", "o", "", "file to write (default: standard output)")
	export.Flags().StringVar(&format, "format", "json", "json or yaml")
	cmd.AddCommand(export)
	return cmd
}
