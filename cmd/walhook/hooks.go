package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/kafkaconn"
	"github.com/walhook/walhook/internal/redact"
	"github.com/walhook/walhook/sinks/webhook"
)

// The hooks commands are a thin layer over webhook.Admin, which holds every check (the HTTP API
// shares it): they parse flags, open the Admin with the config and print.

// needs says what a hooks command reads besides the hook schema.
type needs int

const (
	// needDB: the database alone; the config is used when there is one, else --pg-url or
	// WALHOOK_PG_URL suffice.
	needDB needs = iota
	// needConfig: the model and the deliver target policy (subscribe, update, enable) or Kafka
	// (retrigger, replay, log): a config file is required.
	needConfig
)

// hooksCmd is one `walhook hooks` subcommand with its connection flags.
type hooksCmd struct {
	configFlags
	needs needs
	cfg   *config.Config
}

func (h *hooksCmd) open(ctx context.Context, name string) (*webhook.Admin, error) {
	cfg, fromFile, err := h.loadIfAny()
	if err != nil {
		return nil, err
	}
	if !fromFile && h.needs == needConfig {
		return nil, fmt.Errorf("walhook hooks %s reads the config (the model's events, the deliver target policy, Kafka): "+
			"pass --config FILE, set %s, or run it where ./%s is", name, config.EnvConfig, config.DefaultFile)
	}
	h.cfg = cfg
	var opts []webhook.AdminOption
	if fromFile {
		opts = append(opts, webhook.WithConfig(cfg))
	}
	return webhook.OpenAdmin(ctx, cfg.Postgres.URL, opts...)
}

// newHooksCommand is `walhook hooks`: manage webhook applications and subscriptions.
func newHooksCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hooks",
		Short: "Manage webhook applications and subscriptions, re-trigger, replay and read the attempt log",
		Long: `hooks manages the hook schema in PostgreSQL: applications, and subscriptions that bind one event of one
tenant to one HTTPS endpoint. Each command finds the config as every walhook command does (--config,
else $WALHOOK_CONFIG, else ./walhook.yaml); subscribe, update and enable need it to check the event
against the model and the URL against the deliver target policy, as delivery will.`,
		Example: `  walhook hooks register-app --name crm
  walhook hooks subscribe --app crm --tenant acme --event incident.instance.updated --url https://crm.example.com/hooks
  walhook hooks list
  walhook hooks update --uuid U --url https://crm.example.com/hooks/v2
  walhook hooks unsubscribe --uuid U
  walhook hooks enable --uuid U`,
	}
	cmd.AddCommand(hooksApps(), hooksRegisterApp(), hooksSubscribe(), hooksUpdate(), hooksUnsubscribe(), hooksEnable(),
		hooksList(), hooksRotate(), hooksRetrigger(), hooksReplay(), hooksLog())
	return cmd
}

// hooksCommand builds a subcommand whose run gets an open Admin.
func hooksCommand(c *cobra.Command, n needs, run func(*cobra.Command, *hooksCmd, *webhook.Admin) error) *cobra.Command {
	h := &hooksCmd{needs: n}
	c.Args = cobra.NoArgs
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		a, err := h.open(cmd.Context(), cmd.Name())
		if err != nil {
			return err
		}
		defer a.Close()
		return hooksError(run(cmd, h, a))
	}
	h.register(c)
	return c
}

// hooksError names a refused request field by its flag (--url, not url) and drops the package
// prefix, which means nothing to a user.
func hooksError(err error) error {
	if err == nil {
		return nil
	}
	var ie *webhook.InvalidError
	if errors.As(err, &ie) {
		return fmt.Errorf("--%s: %s", ie.Field, ie.Message)
	}
	return errors.New(strings.TrimPrefix(err.Error(), "webhook: "))
}

func warn(cmd *cobra.Command, warnings []string) {
	for _, w := range warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
	}
}

func hooksApps() *cobra.Command {
	return hooksCommand(&cobra.Command{Use: "apps", Short: "List the registered applications"}, needDB,
		func(cmd *cobra.Command, _ *hooksCmd, a *webhook.Admin) error {
			apps, err := a.Apps(cmd.Context())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tUUID\tNAME\tSUBSCRIPTIONS\tENABLED\tCREATED")
			for _, app := range apps {
				fmt.Fprintf(w, "%d\t%s\t%s\t%d\t%d\t%s\n", app.ID, app.UUID, app.Name, app.Subscriptions, app.Enabled,
					app.CreatedAt.UTC().Format(time.RFC3339))
			}
			return w.Flush()
		})
}

func hooksRegisterApp() *cobra.Command {
	var name string
	cmd := hooksCommand(&cobra.Command{Use: "register-app --name N", Short: "Register an application (a receiving system)"}, needDB,
		func(cmd *cobra.Command, _ *hooksCmd, a *webhook.Admin) error {
			app, err := a.RegisterApp(cmd.Context(), name)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "id: %d\nuuid: %s\nname: %s\n", app.ID, app.UUID, app.Name)
			return nil
		})
	cmd.Flags().StringVar(&name, "name", "", "application name (unique)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

// parseHeaders reads repeated --header 'Name: value' flags.
func parseHeaders(headers []string) (map[string]string, error) {
	out := map[string]string{}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--header %q: write 'Name: value'", h)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}

func hooksSubscribe() *cobra.Command {
	var r webhook.SubscribeRequest
	var headers []string
	cmd := hooksCommand(&cobra.Command{
		Use:   "subscribe --app APP --tenant T --event KEY --url URL",
		Short: "Subscribe an endpoint to one event of one tenant; prints the signing secret",
		Long: `subscribe checks the event against the model and the URL against the deliver target policy (https, a
host, no user info; loopback and private addresses only where deliver.allow_loopback or
deliver.allow_cidrs allow them), then prints the subscription's id, uuid and signing secret. The
secret is printed only here and by rotate-secret: store it with the receiver.`,
	}, needConfig, func(cmd *cobra.Command, _ *hooksCmd, a *webhook.Admin) error {
		h, err := parseHeaders(headers)
		if err != nil {
			return err
		}
		r.Headers = h
		warnings, err := a.CheckSubscribe(cmd.Context(), r)
		if err != nil {
			return err
		}
		warn(cmd, warnings)
		sub, err := a.Subscribe(cmd.Context(), r)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "id: %d\nuuid: %s\nevent: %s\ntenant: %s\nurl: %s\nsecret: %s\noversize: %s\n",
			sub.ID, sub.UUID, sub.EventType, sub.Tenant, redact.URL(sub.URL), sub.Secret, sub.Oversize)
		return nil
	})
	fl := cmd.Flags()
	fl.StringVar(&r.App, "app", "", "application id or name (walhook hooks apps lists them)")
	fl.StringVar(&r.Tenant, "tenant", "", "tenant id")
	fl.StringVar(&r.Event, "event", "", "event, dot or underscore spelling (incident.instance.updated)")
	fl.StringVar(&r.URL, "url", "", "endpoint URL (https://)")
	fl.StringVar(&r.Method, "method", "POST", "POST, PUT or PATCH")
	fl.StringArrayVar(&headers, "header", nil, "extra header 'Name: value' (repeatable)")
	fl.StringVar(&r.Format, "format", "bare", "bare or envelope")
	fl.BoolVar(&r.Ordered, "ordered", false, "deliver each root's versions in order")
	fl.StringVar(&r.Oversize, "oversize", webhook.OversizeDeadLetter, oversizeUsage)
	for _, n := range []string{"app", "tenant", "event", "url"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

func hooksUpdate() *cobra.Command {
	var uuid, url, method, format, oversize string
	var headers []string
	var noHeaders, ordered bool
	cmd := hooksCommand(&cobra.Command{
		Use:   "update --uuid U [--url URL] [--method M] [--header 'N: v']... [--no-headers] [--format F] [--ordered=BOOL] [--oversize thin|dead_letter]",
		Short: "Change a subscription's endpoint, method, headers, format, ordering or oversize handling",
		Long: `update changes what is given and keeps the rest; --header replaces all headers, --no-headers removes them.
A new URL is checked as subscribe checks it. The tenant and the event cannot change: subscribe again
(a new uuid and secret) and unsubscribe the old one.`,
	}, needConfig, func(cmd *cobra.Command, _ *hooksCmd, a *webhook.Admin) error {
		var r webhook.UpdateRequest
		fl := cmd.Flags()
		if fl.Changed("url") {
			warnings, err := a.CheckTarget(cmd.Context(), url)
			if err != nil {
				return err
			}
			warn(cmd, warnings)
			r.URL = &url
		}
		if fl.Changed("method") {
			r.Method = &method
		}
		if fl.Changed("format") {
			r.Format = &format
		}
		if fl.Changed("ordered") {
			r.Ordered = &ordered
		}
		if fl.Changed("oversize") {
			r.Oversize = &oversize
		}
		switch {
		case noHeaders && len(headers) > 0:
			return errors.New("--no-headers and --header together: --header replaces all headers already")
		case noHeaders:
			r.Headers = map[string]string{}
		case len(headers) > 0:
			h, err := parseHeaders(headers)
			if err != nil {
				return err
			}
			r.Headers = h
		}
		sub, err := a.Update(cmd.Context(), uuid, r)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "updated %s: %s %s, format %s, ordered %t, %d headers, oversize %s\n", sub.UUID, sub.Method,
			redact.URL(sub.URL), sub.Format, sub.Ordered, len(sub.Headers), sub.Oversize)
		return nil
	})
	fl := cmd.Flags()
	fl.StringVar(&uuid, "uuid", "", "subscription uuid")
	fl.StringVar(&url, "url", "", "new endpoint URL")
	fl.StringVar(&method, "method", "", "POST, PUT or PATCH")
	fl.StringArrayVar(&headers, "header", nil, "header 'Name: value' (repeatable; replaces all headers)")
	fl.BoolVar(&noHeaders, "no-headers", false, "remove every extra header")
	fl.StringVar(&format, "format", "", "bare or envelope")
	fl.BoolVar(&ordered, "ordered", false, "deliver each root's versions in order")
	fl.StringVar(&oversize, "oversize", "", oversizeUsage)
	_ = cmd.MarkFlagRequired("uuid")
	return cmd
}

const oversizeUsage = "a delivery above deliver.max_payload_bytes: thin (send a thin event naming the root and version, " +
	`with "payload_omitted": "size") or dead_letter (dead-letter it with the reason)`

func hooksUnsubscribe() *cobra.Command {
	var uuid string
	cmd := hooksCommand(&cobra.Command{Use: "unsubscribe --uuid U", Short: "Disable a subscription (the row is kept; enable undoes it)"}, needDB,
		func(cmd *cobra.Command, _ *hooksCmd, a *webhook.Admin) error {
			if err := a.Unsubscribe(cmd.Context(), uuid); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "disabled %s\n", uuid)
			return nil
		})
	cmd.Flags().StringVar(&uuid, "uuid", "", "subscription uuid")
	_ = cmd.MarkFlagRequired("uuid")
	return cmd
}

func hooksEnable() *cobra.Command {
	var uuid string
	cmd := hooksCommand(&cobra.Command{Use: "enable --uuid U",
		Short: "Enable a disabled subscription again (unsubscribed, auto-disabled or gone) and clear its failure state"}, needConfig,
		func(cmd *cobra.Command, _ *hooksCmd, a *webhook.Admin) error {
			sub, err := a.Enable(cmd.Context(), uuid)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "enabled %s (%s → %s); `walhook hooks replay --uuid %s --since 24h` delivers what was dead-lettered meanwhile\n",
				sub.UUID, sub.EventType, redact.URL(sub.URL), sub.UUID)
			return nil
		})
	cmd.Flags().StringVar(&uuid, "uuid", "", "subscription uuid")
	_ = cmd.MarkFlagRequired("uuid")
	return cmd
}

func hooksList() *cobra.Command {
	var tenant, app string
	var enabledOnly bool
	cmd := hooksCommand(&cobra.Command{Use: "list [--tenant T] [--app APP] [--enabled]",
		Short: "List subscriptions (secrets are never shown; URL passwords and query values are masked)"}, needDB,
		func(cmd *cobra.Command, _ *hooksCmd, a *webhook.Admin) error {
			var appID int64
			if app != "" {
				found, err := a.App(cmd.Context(), app)
				if err != nil {
					return err
				}
				appID = found.ID
			}
			subs, err := a.List(cmd.Context())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tUUID\tAPP\tTENANT\tEVENT\tMETHOD\tURL\tFORMAT\tORDERED\tENABLED\tREASON")
			for _, s := range subs {
				if (tenant != "" && s.Tenant != tenant) || (appID != 0 && s.AppID != appID) || (enabledOnly && !s.Enabled) {
					continue
				}
				fmt.Fprintf(w, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%t\t%t\t%s\n", s.ID, s.UUID, s.AppID, s.Tenant, s.EventType,
					s.Method, redact.URL(s.URL), s.Format, s.Ordered, s.Enabled, s.DisabledReason)
			}
			return w.Flush()
		})
	cmd.Flags().StringVar(&tenant, "tenant", "", "only this tenant's")
	cmd.Flags().StringVar(&app, "app", "", "only this application's (id or name)")
	cmd.Flags().BoolVar(&enabledOnly, "enabled", false, "only enabled subscriptions")
	return cmd
}

func hooksRotate() *cobra.Command {
	var uuid string
	var grace time.Duration
	cmd := hooksCommand(&cobra.Command{Use: "rotate-secret --uuid U", Short: "Issue a new signing secret; the old one also signs for --grace"}, needDB,
		func(cmd *cobra.Command, _ *hooksCmd, a *webhook.Admin) error {
			secret, err := a.RotateSecret(cmd.Context(), uuid, grace)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "secret: %s\nprevious secret valid for: %s\n", secret, grace)
			return nil
		})
	cmd.Flags().StringVar(&uuid, "uuid", "", "subscription uuid")
	cmd.Flags().DurationVar(&grace, "grace", config.DefaultDeliverRotationGrace, "how long the previous secret keeps signing")
	_ = cmd.MarkFlagRequired("uuid")
	return cmd
}

func (h *hooksCmd) kafka() (*kgo.Client, error) {
	opts, err := kafkaconn.Opts(h.cfg.Kafka)
	if err != nil {
		return nil, err
	}
	return kgo.NewClient(opts...)
}

func hooksRetrigger() *cobra.Command {
	var uuid, root string
	var version int64
	cmd := hooksCommand(&cobra.Command{Use: "retrigger --uuid U --root KEY [--version N]",
		Short: "Deliver a root's snapshot (latest, or --version) to a subscription again"}, needConfig,
		func(cmd *cobra.Command, h *hooksCmd, a *webhook.Admin) error {
			ctx := cmd.Context()
			sub, err := a.Get(ctx, uuid)
			if err != nil {
				return err
			}
			cl, err := h.kafka()
			if err != nil {
				return err
			}
			defer cl.Close()
			reg, err := registryFor(h.cfg, cl)
			if err != nil {
				return err
			}
			snap, err := webhook.FindSnapshot(ctx, h.cfg, reg, sub, root, version)
			if err != nil {
				return err
			}
			if err := webhook.Retrigger(ctx, cl, h.cfg.Kafka, sub, snap); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "re-triggered %s key %s version %d for %s\n", snap.EventType, snap.Key, snap.Version, uuid)
			return nil
		})
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
	var uuid, since string
	cmd := hooksCommand(&cobra.Command{Use: "replay --uuid U --since TIME", Short: "Deliver a subscription's dead-lettered deliveries again"}, needConfig,
		func(cmd *cobra.Command, h *hooksCmd, a *webhook.Admin) error {
			ctx := cmd.Context()
			if _, err := a.Get(ctx, uuid); err != nil {
				return err
			}
			t, err := parseSince(since)
			if err != nil {
				return err
			}
			cl, err := h.kafka()
			if err != nil {
				return err
			}
			defer cl.Close()
			n, err := webhook.Replay(ctx, cl, h.cfg.Kafka, uuid, t)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "replaying %d dead-lettered deliveries of %s\n", n, uuid)
			return nil
		})
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
	var uuid string
	cmd := hooksCommand(&cobra.Command{Use: "log --uuid U", Short: "Print a subscription's delivery attempts"}, needConfig,
		func(cmd *cobra.Command, h *hooksCmd, a *webhook.Admin) error {
			ctx := cmd.Context()
			if _, err := a.Get(ctx, uuid); err != nil {
				return err
			}
			as, err := webhook.Attempts(ctx, h.cfg.Kafka, uuid)
			if err != nil {
				return err
			}
			return writeAttempts(cmd.OutOrStdout(), as)
		})
	cmd.Flags().StringVar(&uuid, "uuid", "", "subscription uuid")
	_ = cmd.MarkFlagRequired("uuid")
	return cmd
}

func writeAttempts(out io.Writer, as []webhook.Attempt) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TIME\tWEBHOOK-ID\tATTEMPT\tOUTCOME\tSTATUS\tLATENCY\tEVENT\tROOT\tVERSION\tERROR")
	for _, x := range as {
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%d\t%.1fms\t%s\t%s\t%d\t%s\n", x.Time.UTC().Format(time.RFC3339Nano), x.WebhookID,
			x.Attempt, x.Outcome, x.Status, x.LatencyMS, x.EventType, x.RootKey, x.Version, x.Error)
	}
	return w.Flush()
}
