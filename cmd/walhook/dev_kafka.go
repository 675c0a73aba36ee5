//go:build !nodev

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/apachekafka"
	"github.com/walhook/walhook/internal/embedkafka"
)

// startDevKafka starts the demo's broker (kfake in process, or an Apache Kafka node) and, unless
// --registry names one, a schema registry, and points base at them. stop stops what it started.
func startDevKafka(ctx context.Context, log *zap.Logger, f devFlags, base *config.Config) (stop func(), err error) {
	if err := checkBrokerKind(f.dir, f.kafka); err != nil {
		return nil, err
	}
	registryPort := 0
	if f.registry != "" {
		registryPort = -1
	}
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	if f.kafka == "apache" {
		log.Info("starting Apache Kafka (the first run resolves its jars with Maven, which takes a while)")
		c, err := apachekafka.Start(ctx, apachekafka.Options{Dir: filepath.Join(f.dir, "apache-kafka"),
			Log: func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) }})
		if err != nil {
			return nil, fmt.Errorf("Apache Kafka: %w", err)
		}
		stops = append(stops, func() { stopLogged(log, "Apache Kafka", c.Close) })
		base.Kafka.Brokers = c.Brokers()
		if registryPort < 0 {
			return stop, nil
		}
		reg, err := embedkafka.Start(ctx, embedkafka.Options{DataDir: filepath.Join(f.dir, "registry"), RegistryOnly: true, Logger: log.Named("registry")})
		if err != nil {
			stop()
			return nil, fmt.Errorf("embedded schema registry: %w", err)
		}
		stops = append(stops, func() { stopLogged(log, "schema registry", reg.Close) })
		base.SchemaRegistry.URL = reg.RegistryURL()
		return stop, nil
	}
	stack, err := embedkafka.Start(ctx, embedkafka.Options{DataDir: filepath.Join(f.dir, "kafka"), RegistryPort: registryPort, Logger: log.Named("kafka")})
	if err != nil {
		return nil, fmt.Errorf("embedded Kafka: %w", err)
	}
	stops = append(stops, func() { stopLogged(log, "Kafka", stack.Close) })
	base.Kafka.Brokers = stack.Brokers()
	if base.SchemaRegistry.URL == "" {
		base.SchemaRegistry.URL = stack.RegistryURL()
	}
	return stop, nil
}

// checkBrokerKind refuses to run the demo of dir on another kind of broker than it ran on: the
// slot and bubble-up state under dir describe topics the other broker does not have.
func checkBrokerKind(dir, kind string) error {
	path := filepath.Join(dir, "broker")
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return os.WriteFile(path, []byte(kind+"\n"), 0o644)
	case err != nil:
		return fmt.Errorf("read %s: %w", path, err)
	}
	if was := strings.TrimSpace(string(b)); was != kind {
		return fmt.Errorf("the demo in %s ran on --kafka %s; its database and state belong to that broker: "+
			"run with --kafka %s, or with --fresh (deletes %s) or another --dir to use --kafka %s", dir, was, was, dir, kind)
	}
	return nil
}
