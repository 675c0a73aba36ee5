package config

import (
	"fmt"
	"slices"
	"strings"
)

// envVar binds one WALHOOK_* variable to the key it overrides. Only secrets, addresses and the
// per-process instance id have variables: they differ per environment or per process and must
// not live in a committed file.
type envVar struct {
	name string
	path string
	set  func(c *Config, v string)
}

// envVars lists every override, in the order docs/configuration.md documents them.
func envVars() []envVar {
	return []envVar{
		{"WALHOOK_PG_URL", "postgres.url", func(c *Config, v string) { c.Postgres.URL = v }},
		{"WALHOOK_BROKERS", "kafka.brokers", func(c *Config, v string) { c.Kafka.Brokers = SplitList(v) }},
		{"WALHOOK_INSTANCE_ID", "kafka.instance_id", func(c *Config, v string) { c.Kafka.InstanceID = strings.TrimSpace(v) }},
		{"WALHOOK_KAFKA_SASL_USERNAME", "kafka.sasl.username", func(c *Config, v string) { c.Kafka.SASL.Username = v }},
		{"WALHOOK_KAFKA_SASL_PASSWORD", "kafka.sasl.password", func(c *Config, v string) { c.Kafka.SASL.Password = v }},
		{"WALHOOK_REGISTRY_URL", "schema_registry.url", func(c *Config, v string) { c.SchemaRegistry.URL = v }},
		{"WALHOOK_REGISTRY_USERNAME", "schema_registry.username", func(c *Config, v string) { c.SchemaRegistry.Username = v }},
		{"WALHOOK_REGISTRY_PASSWORD", "schema_registry.password", func(c *Config, v string) { c.SchemaRegistry.Password = v }},
		{"WALHOOK_HTTP_LISTEN", "http.listen", func(c *Config, v string) { c.HTTP.Listen = v }},
		{"WALHOOK_API_LISTEN", "api.listen", func(c *Config, v string) { c.API.Listen = v }},
		{"WALHOOK_LOG_LEVEL", "log.level", func(c *Config, v string) { c.Log.Level = v }},
	}
}

// EnvVars returns the names of the WALHOOK_* variables Load honours, for help texts.
func EnvVars() []string {
	vars := envVars()
	out := make([]string, len(vars))
	for i, v := range vars {
		out[i] = v.name
	}
	return out
}

// applyEnv lets each set variable win over the file. A variable set to "" still counts as set
// (WALHOOK_HTTP_LISTEN= disables the endpoint), matching how a shell user reads it.
func applyEnv(c *Config, lookup func(string) (string, bool)) {
	if lookup == nil {
		return
	}
	c.ensureSource()
	for _, ev := range envVars() {
		if v, ok := lookup(ev.name); ok {
			ev.set(c, v)
			origin := ev.name + " (environment)"
			if v == "" {
				origin = ev.name + " (environment, set but empty)"
			}
			c.src.origin[ev.path] = origin
		}
	}
}

// Override is a value given on the command line (walhook's --pg-url, --brokers, --registry,
// --log-level, --http-listen). Overrides win over the environment and the file; problems with
// their values name the flag.
type Override struct {
	// Flag is how the user gave it, e.g. "--pg-url".
	Flag string
	// Env is the WALHOOK_* variable of the same key (WALHOOK_PG_URL): an override sets what that
	// variable would, parsed the same way (WALHOOK_BROKERS and --brokers are comma-separated).
	Env   string
	Value string
}

func applyOverrides(c *Config, overrides []Override) error {
	if len(overrides) == 0 {
		return nil
	}
	c.ensureSource()
	vars := envVars()
	for _, o := range overrides {
		i := slices.IndexFunc(vars, func(ev envVar) bool { return ev.name == o.Env })
		if i < 0 {
			return fmt.Errorf("config: override %s: %s is not a walhook environment variable", o.Flag, o.Env)
		}
		vars[i].set(c, o.Value)
		c.src.origin[vars[i].path] = o.Flag + " (flag)"
	}
	return nil
}

func (c *Config) ensureSource() {
	if c.src == nil {
		c.src = newSource("")
	}
}

// SplitList splits a comma-separated list (WALHOOK_BROKERS, --brokers), trimming blanks and
// dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
