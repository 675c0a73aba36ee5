package main

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
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
}

// processFlags are the flags of every stage subcommand.
type processFlags struct {
	configPath string
	logLevel   string
}

func (f *processFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.configPath, "config", "walhook.yaml", "path of the walhook YAML config")
	cmd.Flags().StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (overrides log.level)")
}

// load reads the config and builds the logger; the effective config is logged with secrets
// redacted so an operator can see what the process really runs with.
func (f *processFlags) load() (*process, error) {
	cfg, err := config.Load(f.configPath)
	if err != nil {
		return nil, err
	}
	if f.logLevel != "" {
		cfg.Log.Level = f.logLevel
	}
	return newProcess(cfg)
}

func newProcess(cfg *config.Config) (*process, error) {
	log, err := obs.NewLogger(cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return nil, err
	}
	log.Info("effective configuration", zap.Any("config", cfg.Redacted()))
	return &process{cfg: cfg, log: log, reg: obs.NewRegistry(), health: obs.NewHealth()}, nil
}

// run serves /metrics, /healthz and /readyz next to the given services until ctx is done or one
// of them fails.
func (p *process) run(ctx context.Context, services ...service) error {
	defer func() { _ = p.log.Sync() }()
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
