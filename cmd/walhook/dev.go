package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/devreceiver"
	"github.com/walhook/walhook/internal/embedpg"
	"github.com/walhook/walhook/internal/obs"
)

type devFlags struct {
	dir        string
	fresh      bool
	pgURL      string
	brokers    string
	kafka      string
	registry   string
	logLevel   string
	httpListen string
}

func newDevCommand() *cobra.Command {
	var f devFlags
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the embedded demo: PostgreSQL, a Kafka-protocol broker, a schema registry and every stage in one process",
		Long: `dev starts a private PostgreSQL cluster (from the PostgreSQL server binaries on this machine) and an
in-process Kafka-protocol broker with a schema registry, keeps their data under --dir between runs,
applies the demo schema, writes the addresses to <dir>/dev.env and runs every stage until Ctrl-C.
--pg-url, --brokers and --registry use real servers instead of the embedded ones; --kafka apache runs a
real Apache Kafka node (KRaft, resolved from Maven Central once: needs Java 17+ and Maven) instead of
the in-process broker.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDev(cmd.Context(), cmd.OutOrStdout(), f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dir, "dir", ".walhook", "where the embedded servers keep their data between runs")
	fl.BoolVar(&f.fresh, "fresh", false, "delete --dir first and start from an empty database and broker")
	fl.StringVar(&f.pgURL, "pg-url", "", "use this PostgreSQL (wal_level=logical) instead of the embedded one")
	fl.StringVar(&f.brokers, "brokers", "", "use these Kafka brokers (comma-separated) instead of the embedded one")
	fl.StringVar(&f.kafka, "kafka", "kfake", "the embedded broker: kfake (in process) or apache (a real Apache Kafka node; needs Java 17+ and Maven)")
	fl.StringVar(&f.registry, "registry", "", "use this schema registry URL instead of the embedded one")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.httpListen, "http-listen", "127.0.0.1:9464", "address of /metrics, /healthz and /readyz")
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
	if f.fresh {
		if err := os.RemoveAll(f.dir); err != nil {
			return fmt.Errorf("--fresh: remove %s: %w", f.dir, err)
		}
	}
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", f.dir, err)
	}

	base := &config.Config{
		Postgres:       config.Postgres{URL: f.pgURL},
		SchemaRegistry: config.SchemaRegistry{URL: f.registry},
		HTTP:           config.HTTP{Listen: f.httpListen},
		Log:            config.Log{Level: f.logLevel, Format: "console"},
		// The demo's timeline deletes must carry incident_instance_id; dev may change the demo
		// tables it owns, a production deployment decides for itself.
		CDC: config.CDC{ManageReplicaIdentity: true},
		// The built-in receiver listens on loopback, which the SSRF guard refuses by default.
		Deliver: config.Deliver{AllowLoopback: true},
		// Kept between runs like the servers' data, so a restart restores nothing it already has.
		BubbleUp: config.BubbleUp{StateDir: filepath.Join(f.dir, "bubbleup")},
	}
	if f.brokers != "" {
		base.Kafka.Brokers = strings.Split(f.brokers, ",")
	}

	if base.Postgres.URL == "" {
		pg, err := embedpg.Start(ctx, embedpg.Options{Dir: filepath.Join(f.dir, "pg"), Logger: log.Named("postgres")})
		if err != nil {
			return fmt.Errorf("embedded PostgreSQL: %w", err)
		}
		defer stopLogged(log, "PostgreSQL", pg.Stop)
		base.Postgres.URL = pg.URL("postgres")
	}
	if err := applyDemoSchema(ctx, base.Postgres.URL); err != nil {
		return err
	}

	if len(base.Kafka.Brokers) == 0 {
		stop, err := startDevKafka(ctx, log, f, base)
		if err != nil {
			return err
		}
		defer stop()
	}

	// The demo model is decoded over the addresses above; the process environment is left out on
	// purpose so a stray WALHOOK_PG_URL cannot point the demo at someone's database.
	cfg, err := config.ParseWith([]byte(demo.ModelYAML), "internal/demo/model.yaml", config.Options{Base: base})
	if err != nil {
		return fmt.Errorf("demo model: %w", err)
	}
	recv, err := devreceiver.Listen(out)
	if err != nil {
		return err
	}
	events, err := subscribeDemo(ctx, cfg.Postgres.URL, cfg, recv)
	if err != nil {
		return err
	}
	env := map[string]string{
		"WALHOOK_PG_URL":       cfg.Postgres.URL,
		"WALHOOK_BROKERS":      strings.Join(cfg.Kafka.Brokers, ","),
		"WALHOOK_REGISTRY_URL": cfg.SchemaRegistry.URL,
		"WALHOOK_RECEIVER_URL": recv.URL(),
	}
	envFile := filepath.Join(f.dir, "dev.env")
	if err := writeEnvFile(envFile, env); err != nil {
		return err
	}
	printDevBanner(out, env, envFile, cfg.HTTP.Listen)
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
	services = append(services, service{name: "receiver", run: recv.Run})
	log.Info("walhook dev is ready; Ctrl-C stops it", zap.Duration("startup", time.Since(started).Round(time.Millisecond)))
	return p.run(ctx, services...)
}

func applyDemoSchema(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL to apply the demo schema: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, demo.SchemaSQL); err != nil {
		return fmt.Errorf("apply the demo schema: %w", err)
	}
	return nil
}

// writeEnvFile writes shell assignments so another terminal can `. .walhook/dev.env`.
func writeEnvFile(path string, env map[string]string) error {
	var b strings.Builder
	b.WriteString("# Written by `walhook dev`; source it: . " + path + "\n")
	for _, k := range sortedKeys(env) {
		fmt.Fprintf(&b, "export %s='%s'\n", k, strings.ReplaceAll(env[k], "'", `'\''`))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func printDevBanner(out io.Writer, env map[string]string, envFile, httpListen string) {
	fmt.Fprintln(out, "walhook dev")
	for _, k := range sortedKeys(env) {
		fmt.Fprintf(out, "  %-22s %s\n", k, env[k])
	}
	fmt.Fprintf(out, "  %-22s http://%s/metrics\n", "metrics", httpListen)
	fmt.Fprintf(out, "  addresses written to %s (source it: . %s)\n", envFile, envFile)
}

func stopLogged(log *zap.Logger, what string, stop func() error) {
	if err := stop(); err != nil {
		log.Warn("stopping "+what, zap.Error(err))
		return
	}
	log.Info("stopped " + what)
}
