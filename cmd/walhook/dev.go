//go:build !nodev

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/devreceiver"
	"github.com/walhook/walhook/internal/embedpg"
	"github.com/walhook/walhook/internal/obs"
)

type devFlags struct {
	dir        string
	fresh      bool
	configPath string
	schemas    []string
	pgURL      string
	brokers    string
	kafka      string
	registry   string
	logLevel   string
	httpListen string
	apiListen  string
	// apiListenSet: --api-listen was given; else a taken default port is replaced by a free one.
	apiListenSet bool
	// httpListenSet: --http-listen was given; else a taken default port is replaced by a free one.
	httpListenSet bool
}

func newDevCommand() *cobra.Command {
	var f devFlags
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the embedded demo: PostgreSQL, a Kafka-protocol broker, a schema registry and every stage in one process",
		Long: `dev starts a private PostgreSQL cluster (from the PostgreSQL server binaries on this machine) and an
in-process Kafka-protocol broker with a schema registry, keeps their data under --dir between runs,
applies the demo schema, subscribes a built-in receiver to every event of the model for tenant acme,
and runs every stage until Ctrl-C. It writes its effective config to <dir>/walhook.yaml and the
addresses and WALHOOK_CONFIG to <dir>/dev.env: after ` + "`. .walhook/dev.env`" + ` every walhook command
works without flags.

--config FILE runs your own model and settings instead of the demo's (the servers' addresses are
still dev's); --schema FILE.sql creates its tables first. --pg-url, --brokers and --registry use real
servers instead of the embedded ones; --kafka apache runs a real Apache Kafka node (KRaft, resolved
from Maven Central once: needs Java 17+ and Maven) instead of the in-process broker.`,
		Example: `  walhook dev
  walhook dev --config my-model.yaml --schema my-tables.sql
  walhook dev --pg-url postgres://me@localhost:5432/app --brokers localhost:9092
  walhook dev --kafka apache --dir .walhook-apache`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.httpListenSet = cmd.Flags().Changed("http-listen")
			f.apiListenSet = cmd.Flags().Changed("api-listen")
			return runDev(cmd.Context(), cmd.OutOrStdout(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dir, "dir", ".walhook", "where the embedded servers keep their data between runs")
	fl.BoolVar(&f.fresh, "fresh", false, "delete the data in --dir first and start from an empty database and broker")
	fl.StringVar(&f.configPath, "config", "", "run this config's model and settings instead of the demo's")
	fl.StringArrayVar(&f.schemas, "schema", nil, "SQL file applied after the demo schema, e.g. the tables of --config's model (repeatable)")
	fl.StringVar(&f.pgURL, "pg-url", "", "use this PostgreSQL (wal_level=logical) instead of the embedded one")
	fl.StringVar(&f.brokers, "brokers", "", "use these Kafka brokers (comma-separated) instead of the embedded one")
	fl.StringVar(&f.kafka, "kafka", "kfake", "the embedded broker: kfake (in process) or apache (a real Apache Kafka node; needs Java 17+ and Maven)")
	fl.StringVar(&f.registry, "registry", "", "use this schema registry URL instead of the embedded one")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.httpListen, "http-listen", "127.0.0.1:9464", "address of /metrics, /healthz and /readyz (default: a free port if 9464 is taken; port 0: a free port)")
	fl.StringVar(&f.apiListen, "api-listen", config.DefaultAPIListen, "address of the API and the web console (default: a free port if 8089 is taken; port 0: a free port)")
	return cmd
}

func runDev(ctx context.Context, out io.Writer, f devFlags) error {
	started := time.Now()
	log, err := obs.NewLogger(f.logLevel, "console")
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	if f.kafka != "kfake" && f.kafka != "apache" {
		return fmt.Errorf("--kafka %q: use kfake (the in-process broker) or apache (a real Apache Kafka node)", f.kafka)
	}
	dir, err := filepath.Abs(f.dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	unlock, err := lockDevDir(dir)
	if err != nil {
		return err
	}
	defer unlock()
	f.dir = dir
	if f.fresh {
		if err := emptyDir(dir, "dev.lock"); err != nil {
			return fmt.Errorf("--fresh: %w", err)
		}
	}
	model, source := []byte(demo.ModelYAML), "internal/demo/model.yaml"
	if f.configPath != "" {
		if model, err = os.ReadFile(f.configPath); err != nil {
			return fmt.Errorf("--config: %w", err)
		}
		source = f.configPath
	}
	f.httpListen = devListen(f.httpListen, f.httpListenSet)
	f.apiListen = devListen(f.apiListen, f.apiListenSet)
	// Decode first, with placeholder addresses, so a broken file is reported before any server
	// starts.
	if _, err := devConfig(model, source, f, dir, "postgres://placeholder", []string{"placeholder:9092"}, ""); err != nil {
		return err
	}

	pgURL := f.pgURL
	if pgURL == "" {
		pg, err := embedpg.Start(ctx, embedpg.Options{Dir: filepath.Join(dir, "pg"), Logger: log.Named("postgres")})
		if err != nil {
			return fmt.Errorf("embedded PostgreSQL: %w", err)
		}
		defer stopLogged(log, "PostgreSQL", pg.Stop)
		pgURL = pg.URL("postgres")
	}
	if err := applySQL(ctx, pgURL, "the demo schema", demo.SchemaSQL); err != nil {
		return err
	}
	for _, s := range f.schemas {
		sql, err := os.ReadFile(s)
		if err != nil {
			return fmt.Errorf("--schema: %w", err)
		}
		if err := applySQL(ctx, pgURL, s, string(sql)); err != nil {
			return err
		}
	}

	brokers, registry := config.SplitList(f.brokers), f.registry
	embeddedKafka := len(brokers) == 0
	if embeddedKafka {
		kafka := &config.Config{SchemaRegistry: config.SchemaRegistry{URL: registry}}
		stop, err := startDevKafka(ctx, log, f, kafka)
		if err != nil {
			return err
		}
		defer stop()
		brokers, registry = kafka.Kafka.Brokers, kafka.SchemaRegistry.URL
	}
	cfg, err := devConfig(model, source, f, dir, pgURL, brokers, registry)
	if err != nil {
		return err
	}
	if embeddedKafka {
		// The embedded broker speaks neither TLS nor SASL, whatever the file says.
		cfg.Kafka.TLS, cfg.Kafka.SASL = config.TLS{}, config.SASL{}
	}
	if err := config.CheckDatabase(ctx, cfg, ""); err != nil {
		return fmt.Errorf("the model does not match the database (create its tables with --schema FILE.sql):\n%w", err)
	}

	recv, err := devreceiver.Listen(out)
	if err != nil {
		return err
	}
	events, err := subscribeDemo(ctx, cfg, recv)
	if err != nil {
		return err
	}
	apiKey, err := devAPIKey(ctx, cfg)
	if err != nil {
		return err
	}
	cfgFile := filepath.Join(dir, "walhook.yaml")
	if err := writeDevConfig(cfgFile, cfg); err != nil {
		return err
	}
	env := map[string]string{
		"WALHOOK_CONFIG":       cfgFile,
		"WALHOOK_PG_URL":       cfg.Postgres.URL,
		"WALHOOK_BROKERS":      strings.Join(cfg.Kafka.Brokers, ","),
		"WALHOOK_REGISTRY_URL": cfg.SchemaRegistry.URL,
		"WALHOOK_RECEIVER_URL": recv.URL(),
		"WALHOOK_API_URL":      "http://" + cfg.API.Listen,
		"WALHOOK_API_KEY":      apiKey,
	}
	envFile := filepath.Join(f.dir, "dev.env")
	if err := writeEnvFile(envFile, env, binDirForPath()); err != nil {
		return err
	}
	printDevBanner(out, env, envFile, cfg.HTTP.Listen, cfg.API.Listen)
	fmt.Fprintf(out, "  the built-in receiver verifies and prints tenant %q's %s\n", devTenant, strings.Join(events, ", "))

	p, err := newProcess(cfg)
	if err != nil {
		return err
	}
	p.log = log
	if err := p.initTracing(ctx, "dev"); err != nil {
		return err
	}
	services, err := devStages(ctx, p)
	if err != nil {
		p.closeTracing()
		return err
	}
	// The API is bound before dev says it is ready: the banner above already shows its URL.
	apiSvc, err := startAPI(ctx, p)
	if err != nil {
		p.closeTracing()
		return err
	}
	services = append(services, apiSvc, service{name: "receiver", run: recv.Run})
	log.Info("walhook dev is ready; Ctrl-C stops it", zap.Duration("startup", time.Since(started).Round(time.Millisecond)))
	err = p.run(ctx, services...)
	// The config and the addresses are of servers that are gone now.
	_ = os.Remove(envFile)
	return err
}

// devConfig decodes the model (the demo's or --config's) over dev's base and then puts dev's
// own settings on top: the servers it runs, the receiver's loopback address, the state under
// dir. The process environment is left out on purpose, so a stray WALHOOK_PG_URL (or a sourced
// dev.env) cannot point the demo at someone's database.
func devConfig(model []byte, source string, f devFlags, dir, pgURL string, brokers []string, registry string) (*config.Config, error) {
	base := &config.Config{
		Log: config.Log{Format: "console"},
		// Kept between runs like the servers' data, so a restart restores nothing it already has.
		BubbleUp: config.BubbleUp{StateDir: filepath.Join(dir, "bubbleup")},
	}
	cfg, err := config.ParseWith(model, source, config.Options{Base: base, Overrides: []config.Override{
		{Flag: "--pg-url", Env: "WALHOOK_PG_URL", Value: pgURL},
		{Flag: "--brokers", Env: "WALHOOK_BROKERS", Value: strings.Join(brokers, ",")},
		{Flag: "--registry", Env: "WALHOOK_REGISTRY_URL", Value: registry},
		{Flag: "--http-listen", Env: "WALHOOK_HTTP_LISTEN", Value: f.httpListen},
		{Flag: "--api-listen", Env: "WALHOOK_API_LISTEN", Value: f.apiListen},
		{Flag: "--log-level", Env: "WALHOOK_LOG_LEVEL", Value: f.logLevel},
	}})
	if err != nil {
		var ve *config.ValidationError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("%s:\n%w", source, err)
		}
		return nil, err
	}
	cfg.Log.Format = "console"
	// The demo's timeline deletes must carry incident_instance_id; dev may change the tables
	// it owns, a production deployment decides for itself.
	cfg.CDC.ManageReplicaIdentity = true
	// The built-in receiver listens on loopback, which the SSRF guard refuses by default.
	cfg.Deliver.AllowLoopback = true
	if cfg.BubbleUp.StateDir == "" || f.configPath != "" && !filepath.IsAbs(cfg.BubbleUp.StateDir) {
		cfg.BubbleUp.StateDir = filepath.Join(dir, "bubbleup")
	}
	return cfg, cfg.Validate()
}

// devListen is the metrics address dev prints and serves: a port of 0, or the default port when
// another process (a second demo) holds it, becomes a free port, so the banner shows where
// /metrics really is.
func devListen(addr string, explicit bool) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || addr == "" {
		return addr // config validation reports it
	}
	if port != "0" {
		if explicit {
			return addr
		}
		l, err := net.Listen("tcp", addr)
		if err == nil {
			_ = l.Close()
			return addr
		}
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return addr
	}
	defer l.Close()
	return l.Addr().String()
}

// emptyDir removes everything in dir but keep.
func emptyDir(dir, keep string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == keep {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func applySQL(ctx context.Context, url, what, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL to apply %s: %w", what, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("apply %s: %w", what, err)
	}
	return nil
}

// writeDevConfig writes the effective config of the running demo, so every other command reads
// the same model and settings (WALHOOK_CONFIG in dev.env points at it). It holds the servers'
// URLs as they are, so it is private to the user.
func writeDevConfig(path string, cfg *config.Config) error {
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	header := "# Written by `walhook dev` on every start: the effective config of the demo running in this folder.\n" +
		"# `. .walhook/dev.env` points WALHOOK_CONFIG at it, so walhook status, hooks and tail need no flags.\n" +
		"# Edits are lost at the next start; to run your own model, use `walhook dev --config FILE`.\n"
	if err := os.WriteFile(path, append([]byte(header), data...), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// binDirForPath is the directory of the running binary when it is a walhook of its own (what
// `make run` builds, bin/walhook), so that dev.env can put it on PATH and the README's
// `walhook status` works as printed; "" for `go run`'s throw-away binary.
func binDirForPath() string {
	exe, err := os.Executable()
	if err != nil || filepath.Base(exe) != "walhook" || strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return ""
	}
	return filepath.Dir(exe)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// writeEnvFile writes shell assignments so another terminal can `. .walhook/dev.env`; with
// pathDir it also puts that directory first on PATH.
func writeEnvFile(path string, env map[string]string, pathDir string) error {
	var b strings.Builder
	b.WriteString("# Written by `walhook dev`; source it: . " + path + "\n")
	for _, k := range sortedKeys(env) {
		fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(env[k]))
	}
	if pathDir != "" {
		fmt.Fprintf(&b, "export PATH=%s\"${PATH:+:$PATH}\"\n", shellQuote(pathDir))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func printDevBanner(out io.Writer, env map[string]string, envFile, httpListen, apiListen string) {
	fmt.Fprintln(out, "walhook dev")
	for _, k := range sortedKeys(env) {
		fmt.Fprintf(out, "  %-22s %s\n", k, env[k])
	}
	fmt.Fprintf(out, "  %-22s http://%s/metrics\n", "metrics", httpListen)
	fmt.Fprintf(out, "  %-22s http://%s/  (sign in with the operator key WALHOOK_API_KEY)\n", "console", apiListen)
	fmt.Fprintf(out, "  written to %s: in another terminal, `. %s` and every walhook command works without flags\n", envFile, envFile)
}

func stopLogged(log *zap.Logger, what string, stop func() error) {
	if err := stop(); err != nil {
		log.Warn("stopping "+what, zap.Error(err))
		return
	}
	log.Info("stopped " + what)
}
