package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/obs"
)

// process is what every long-running subcommand shares: its configuration, logger, metrics
// registry and readiness checks.
type process struct {
	cfg    *config.Config
	log    *zap.Logger
	reg    *prometheus.Registry
	health *obs.Health
	// tp traces the stages; nil when tracing is off (the default). shutdownTracing flushes it.
	tp              trace.TracerProvider
	shutdownTracing func(context.Context) error
}

// processFlags are the flags of every stage subcommand: the config flags and --log-level.
type processFlags struct {
	configFlags
	logLevel string
}

func (f *processFlags) register(cmd *cobra.Command) {
	f.configFlags.register(cmd)
	cmd.Flags().StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (overrides log.level and $WALHOOK_LOG_LEVEL)")
}

// load reads the config and builds the logger.
func (f *processFlags) load() (*process, error) {
	overrides := f.overrides()
	if f.logLevel != "" {
		overrides = append(overrides, config.Override{Flag: "--log-level", Env: "WALHOOK_LOG_LEVEL", Value: f.logLevel})
	}
	path, _, err := config.Find(f.path, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	cfg, err := config.LoadWith(path, config.Options{LookupEnv: os.LookupEnv, Overrides: overrides})
	if err != nil {
		return nil, err
	}
	return newProcess(cfg)
}

// newProcess builds the logger and logs the effective config, secrets redacted, at debug level
// (`walhook config show` prints it too), so a start is quiet unless asked.
func newProcess(cfg *config.Config) (*process, error) {
	log, err := obs.NewLogger(cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return nil, err
	}
	log.Debug("effective configuration", zap.Any("config", yamlView(cfg.Redacted())))
	return &process{cfg: cfg, log: log, reg: obs.NewRegistry(), health: obs.NewHealth(),
		shutdownTracing: func(context.Context) error { return nil }}, nil
}

// initTracing builds the tracer provider from the OTEL_* environment (tracing.go); run shuts it
// down.
func (p *process) initTracing(ctx context.Context, stage string) error {
	tp, shutdown, err := newTracerProvider(ctx, stage)
	if err != nil {
		return err
	}
	p.tp, p.shutdownTracing = tp, shutdown
	if tp != nil {
		p.log.Info("tracing on: exporting spans over OTLP/HTTP")
	}
	return nil
}

// closeTracing flushes and stops the tracer provider, bounded so a dead collector cannot hold up
// the exit.
func (p *process) closeTracing() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.shutdownTracing(ctx); err != nil {
		p.log.Warn("tracing: flushing spans on exit failed", zap.Error(err))
	}
}

// run serves /metrics, /healthz and /readyz next to the given services until ctx is done or one
// of them fails.
func (p *process) run(ctx context.Context, services ...service) error {
	defer func() { _ = p.log.Sync() }()
	defer startProfiles(p.log)()
	defer p.closeTracing()
	if p.cfg.HTTP.Listen != "" {
		srv, err := obs.Listen(p.cfg.HTTP.Listen, p.reg, p.health, p.log)
		if err != nil {
			return err
		}
		p.log.Info("serving /metrics, /healthz and /readyz", zap.String("addr", srv.Addr()))
		services = append(services, service{name: "http", run: srv.Run})
	}
	if err := runServices(ctx, p.log, services...); err != nil {
		return fmt.Errorf("walhook stopped: %w", err)
	}
	p.log.Info("stopped cleanly")
	return nil
}

// startProfiles honours the hidden WALHOOK_CPUPROFILE and WALHOOK_BLOCKPROFILE (paths) used for
// performance work: a CPU profile over the whole run, and block and mutex profiles written on
// exit (the latter to WALHOOK_BLOCKPROFILE+".mutex"). The returned func stops and writes them.
func startProfiles(log *zap.Logger) func() {
	var stops []func()
	if path := os.Getenv("WALHOOK_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err != nil {
			log.Warn("cpu profile", zap.Error(err))
		} else if err := pprof.StartCPUProfile(f); err != nil {
			log.Warn("cpu profile", zap.Error(err))
			_ = f.Close()
		} else {
			stops = append(stops, func() { pprof.StopCPUProfile(); _ = f.Close() })
		}
	}
	if path := os.Getenv("WALHOOK_BLOCKPROFILE"); path != "" {
		runtime.SetBlockProfileRate(int(time.Millisecond / 10))
		runtime.SetMutexProfileFraction(10)
		stops = append(stops, func() {
			for name, p := range map[string]string{"block": path, "mutex": path + ".mutex"} {
				if f, err := os.Create(p); err == nil {
					_ = pprof.Lookup(name).WriteTo(f, 0)
					_ = f.Close()
				}
			}
		})
	}
	return func() {
		for _, stop := range stops {
			stop()
		}
	}
}
