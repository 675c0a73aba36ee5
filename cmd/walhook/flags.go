package main

import (
	"errors"
	"os"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/walhook/walhook/config"
)

// configFlags are the flags of every command that reads the config or talks to PostgreSQL or
// Kafka, so each finds the config the same way (--config, else WALHOOK_CONFIG, else
// ./walhook.yaml) and takes the same overrides, which win over the environment and the file.
type configFlags struct {
	path     string
	pgURL    string
	brokers  string
	registry string
}

func (f *configFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.path, "config", "", "walhook YAML config (default $"+config.EnvConfig+", else ./"+config.DefaultFile+")")
	fl.StringVar(&f.pgURL, "pg-url", "", "PostgreSQL URL, overrides postgres.url and $WALHOOK_PG_URL")
	fl.StringVar(&f.brokers, "brokers", "", "Kafka brokers host:port,..., override kafka.brokers and $WALHOOK_BROKERS")
	fl.StringVar(&f.registry, "registry", "", "schema registry URL, overrides schema_registry.url and $WALHOOK_REGISTRY_URL")
}

func (f *configFlags) overrides() []config.Override {
	var out []config.Override
	for _, o := range []config.Override{
		{Flag: "--pg-url", Env: "WALHOOK_PG_URL", Value: f.pgURL},
		{Flag: "--brokers", Env: "WALHOOK_BROKERS", Value: f.brokers},
		{Flag: "--registry", Env: "WALHOOK_REGISTRY_URL", Value: f.registry},
	} {
		if o.Value != "" {
			out = append(out, o)
		}
	}
	return out
}

// load reads the config file the flags and environment name, with the environment and the
// flags applied, and validates it.
func (f *configFlags) load() (*config.Config, error) {
	path, _, err := config.Find(f.path, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	return config.LoadWith(path, config.Options{LookupEnv: os.LookupEnv, Overrides: f.overrides()})
}

// loadIfAny is load for commands that can also work without a config file from the connection
// flags and variables alone (`hooks list --pg-url`, `tail --brokers`): with no file anywhere it
// returns the connection settings as a bare, unvalidated Config.
func (f *configFlags) loadIfAny() (cfg *config.Config, fromFile bool, err error) {
	cfg, err = f.load()
	if !errors.Is(err, config.ErrNoConfig) {
		return cfg, err == nil, err
	}
	bare := &config.Config{
		Postgres:       config.Postgres{URL: firstSet(f.pgURL, os.Getenv("WALHOOK_PG_URL"))},
		SchemaRegistry: config.SchemaRegistry{URL: firstSet(f.registry, os.Getenv("WALHOOK_REGISTRY_URL"))},
		Kafka:          config.Kafka{TopicPrefix: config.DefaultTopicPrefix, ClientID: config.DefaultClientID},
	}
	bare.Kafka.Brokers = config.SplitList(firstSet(f.brokers, os.Getenv("WALHOOK_BROKERS")))
	return bare, false, nil
}

func firstSet(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// yamlView is cfg as YAML sees it, for logging: YAML key names and duration strings
// ("status_interval": "1s") rather than Go field names and nanoseconds.
func yamlView(cfg *config.Config) any {
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return err.Error()
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return err.Error()
	}
	return m
}
