package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/kafkaconn"
	"github.com/walhook/walhook/sinks/webhook"
)

// hooksFlags are the connection flags of every `walhook hooks` subcommand.
type hooksFlags struct {
	pgURL      string
	configPath string
}

func (f *hooksFlags) register(cmd *cobra.Command, kafka bool) {
	cmd.Flags().StringVar(&f.pgURL, "pg-url", "", "database with the hook schema (default $WALHOOK_PG_URL, else postgres.url of --config)")
	if kafka {
		cmd.Flags().StringVar(&f.configPath, "config", "walhook.yaml", "walhook YAML config (Kafka settings and model)")
	}
}

func (f *hooksFlags) admin(ctx context.Context) (*webhook.Admin, error) {
	url := f.pgURL
	if url == "" {
		url = os.Getenv("WALHOOK_PG_URL")
	}
	if url == "" && f.configPath != "" {
		if cfg, err := config.Load(f.configPath); err == nil {
			url = cfg.Postgres.URL
		}
	}
	return webhook.OpenAdmin(ctx, url)
}

func (f *hooksFlags) kafka() (*config.Config, *kgo.Client, error) {
	cfg, err := config.Load(f.configPath)
	if err != nil {
		return nil, nil, err
	}
	opts, err := kafkaconn.Opts(cfg.Kafka)
	if err != nil {
		return nil, nil, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, nil, err
	}
	return cfg, cl, nil
}

// newHooksCommand is `walhook hooks`: manage webhook applications and subscriptions.
func newHooksCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "hooks", Short: "Manage webhook applications and subscriptions, re-trigger, replay and read the attempt log"}
	cmd.AddCommand(hooksRegisterApp(), hooksSubscribe(), hooksUnsubscribe(), hooksList(), hooksRotate(),
		hooksRetrigger(), hooksReplay(), hooksLog())
	return cmd
}

func withAdmin(f *hooksFlags, fn func(*cobra.Command, *webhook.Admin) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		a, err := f.admin(cmd.Context())
		if err != nil {
			return err
		}
		defer a.Close()
		return fn(cmd, a)
	}
}

func hooksRegisterApp() *cobra.Command {
	var f hooksFlags
	var name string
	cmd := &cobra.Command{Use: "register-app --name N", Short: "Register an application", Args: cobra.NoArgs,
		RunE: withAdmin(&f, func(cmd *cobra.Command, a *webhook.Admin) error {
			app, err := a.RegisterApp(cmd.Context(), name)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "id: %d\nuuid: %s\n", app.ID, app.UUID)
			return nil
		})}
	f.register(cmd, false)
	cmd.Flags().StringVar(&name, "name", "", "application name (unique)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func hooksSubscribe() *cobra.Command {
	var f hooksFlags
	var r webhook.SubscribeRequest
	var headers []string
	cmd := &cobra.Command{Use: "subscribe --app ID --tenant T --event KEY --url URL", Short: "Subscribe an endpoint to one event type of one tenant",
		Args: cobra.NoArgs,
		RunE: withAdmin(&f, func(cmd *cobra.Command, a *webhook.Admin) error {
			r.Headers = map[string]string{}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, ":")
				if !ok || strings.TrimSpace(k) == "" {
					return fmt.Errorf("--header %q: write 'Name: value'", h)
				}
				r.Headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
			sub, err := a.Subscribe(cmd.Context(), r)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "id: %d\nuuid: %s\nsecret: %s\n", sub.ID, sub.UUID, sub.Secret)
			return nil
		})}
	f.register(cmd, false)
	fl := cmd.Flags()
	fl.Int64Var(&r.AppID, "app", 0, "application id")
	fl.StringVar(&r.Tenant, "tenant", "", "tenant id")
	fl.StringVar(&r.Event, "event", "", "event, dot or underscore spelling (incident.instance.updated)")
	fl.StringVar(&r.URL, "url", "", "endpoint URL (https://)")
	fl.StringVar(&r.Method, "method", "POST", "POST, PUT or PATCH")
	fl.StringArrayVar(&headers, "header", nil, "extra header 'Name: value' (repeatable)")
	fl.StringVar(&r.Format, "format", "bare", "bare or envelope")
	fl.BoolVar(&r.Ordered, "ordered", false, "deliver each root's versions in order")
	for _, n := range []string{"app", "tenant", "event", "url"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

func hooksUnsubscribe() *cobra.Command {
	var f hooksFlags
	var uuid string
	cmd := &cobra.Command{Use: "unsubscribe --uuid U", Short: "Disable a subscription (the row is kept)", Args: cobra.NoArgs,
		RunE: withAdmin(&f, func(cmd *cobra.Command, a *webhook.Admin) error {
			if err := a.Unsubscribe(cmd.Context(), uuid); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "disabled %s\n", uuid)
			return nil
		})}
	f.register(cmd, false)
	cmd.Flags().StringVar(&uuid, "uuid", "", "subscription uuid")
	_ = cmd.MarkFlagRequired("uuid")
	return cmd
}

func hooksList() *cobra.Command {
	var f hooksFlags
	cmd := &cobra.Command{Use: "list", Short: "List subscriptions (secrets are not shown)", Args: cobra.NoArgs,
		RunE: withAdmin(&f, func(cmd *cobra.Command, a *webhook.Admin) error {
			subs, err := a.List(cmd.Context())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tUUID\tAPP\tTENANT\tEVENT\tMETHOD\tURL\tFORMAT\tORDERED\tENABLED\tREASON")
			for _, s := range subs {
				fmt.Fprintf(w, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%t\t%t\t%s\n", s.ID, s.UUID, s.AppID, s.Tenant, s.EventType,
					s.Method, s.URL, s.Format, s.Ordered, s.Enabled, s.DisabledReason)
			}
			return w.Flush()
		})}
	f.register(cmd, false)
	return cmd
}

func hooksRotate() *cobra.Command {
	var f hooksFlags
	var uuid string
	var grace time.Duration
	cmd := &cobra.Command{Use: "rotate-secret --uuid U", Short: "Issue a new signing secret; the old one also signs for --grace", Args: cobra.NoArgs,
		RunE: withAdmin(&f, func(cmd *cobra.Command, a *webhook.Admin) error {
			secret, err := a.RotateSecret(cmd.Context(), uuid, grace)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "secret: %s\nprevious secret valid for: %s\n", secret, grace)
			return nil
		})}
	f.register(cmd, false)
	cmd.Flags().StringVar(&uuid, "uuid", "", "subscription uuid")
	cmd.Flags().DurationVar(&grace, "grace", config.DefaultDeliverRotationGrace, "how long the previous secret keeps signing")
	_ = cmd.MarkFlagRequired("uuid")
	return cmd
}

func hooksRetrigger() *cobra.Command {
	var f hooksFlags
	var uuid, root string
	var version int64
	cmd := &cobra.Command{Use: "retrigger --uuid U --root KEY [--version N]", Short: "Deliver a root's snapshot (latest, or --version) to a subscription again",
		Args: cobra.NoArgs,
		RunE: withAdmin(&f, func(cmd *cobra.Command, a *webhook.Admin) error {
			ctx := cmd.Context()
			sub, err := a.Get(ctx, uuid)
			if err != nil {
				return err
			}
			cfg, cl, err := f.kafka()
			if err != nil {
				return err
			}
			defer cl.Close()
			reg, err := registryFor(cfg, cl)
			if err != nil {
				return err
			}
			snap, err := webhook.FindSnapshot(ctx, cfg, reg, sub, root, version)
			if err != nil {
				return err
			}
			if err := webhook.Retrigger(ctx, cl, cfg.Kafka, sub, snap); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "re-triggered %s key %s version %d for %s\n", snap.EventType, snap.Key, snap.Version, uuid)
			return nil
		})}
	f.register(cmd, true)
	cmd.Flags().StringVar(&uuid, "uuid", "", "subscription uuid")
	cmd.Flags().StringVar(&root, "root", "", "root key")
	cmd.Flags().Int64Var(&version, "version", 0, "snapshot version (default: the latest)")
	_ = cmd.MarkFlagRequired("uuid")
	_ = cmd.MarkFlagRequired("root")
	return cmd
}

func registryFor(cfg *config.Config, cl *kgo.Client) (avro.Registry, error) {
	return kafkaconn.AvroRegistry(cfg, cl)
}

func hooksReplay() *cobra.Command {
	var f hooksFlags
	var uuid, since string
	cmd := &cobra.Command{Use: "replay --uuid U --since TIME", Short: "Deliver a subscription's dead-lettered deliveries again",
		Args: cobra.NoArgs,
		RunE: withAdmin(&f, func(cmd *cobra.Command, a *webhook.Admin) error {
			ctx := cmd.Context()
			if _, err := a.Get(ctx, uuid); err != nil {
				return err
			}
			t, err := parseSince(since)
			if err != nil {
				return err
			}
			cfg, cl, err := f.kafka()
			if err != nil {
				return err
			}
			defer cl.Close()
			n, err := webhook.Replay(ctx, cl, cfg.Kafka, uuid, t)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "replaying %d dead-lettered deliveries of %s\n", n, uuid)
			return nil
		})}
	f.register(cmd, true)
	cmd.Flags().StringVar(&uuid, "uuid", "", "subscription uuid")
	cmd.Flags().StringVar(&since, "since", "", "RFC 3339 time, or a duration ago (24h)")
	_ = cmd.MarkFlagRequired("uuid")
	_ = cmd.MarkFlagRequired("since")
	return cmd
}

func parseSince(s string) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q: write an RFC 3339 time (2026-02-03T10:00:00Z) or a duration ago (24h)", s)
	}
	return t, nil
}

func hooksLog() *cobra.Command {
	var f hooksFlags
	var uuid string
	cmd := &cobra.Command{Use: "log --uuid U", Short: "Print a subscription's delivery attempts", Args: cobra.NoArgs,
		RunE: withAdmin(&f, func(cmd *cobra.Command, a *webhook.Admin) error {
			ctx := cmd.Context()
			if _, err := a.Get(ctx, uuid); err != nil {
				return err
			}
			cfg, err := config.Load(f.configPath)
			if err != nil {
				return err
			}
			as, err := webhook.Attempts(ctx, cfg.Kafka, uuid)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TIME\tWEBHOOK-ID\tATTEMPT\tOUTCOME\tSTATUS\tLATENCY\tEVENT\tROOT\tVERSION\tERROR")
			for _, x := range as {
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%d\t%.1fms\t%s\t%s\t%d\t%s\n", x.Time.UTC().Format(time.RFC3339Nano), x.WebhookID,
					x.Attempt, x.Outcome, x.Status, x.LatencyMS, x.EventType, x.RootKey, x.Version, x.Error)
			}
			return w.Flush()
		})}
	f.register(cmd, true)
	cmd.Flags().StringVar(&uuid, "uuid", "", "subscription uuid")
	_ = cmd.MarkFlagRequired("uuid")
	return cmd
}
