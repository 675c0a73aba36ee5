package config

import "strings"

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
		{"WALHOOK_BROKERS", "kafka.brokers", func(c *Config, v string) { c.Kafka.Brokers = splitList(v) }},
		{"WALHOOK_INSTANCE_ID", "kafka.instance_id", func(c *Config, v string) { c.Kafka.InstanceID = strings.TrimSpace(v) }},
		{"WALHOOK_KAFKA_SASL_USERNAME", "kafka.sasl.username", func(c *Config, v string) { c.Kafka.SASL.Username = v }},
		{"WALHOOK_KAFKA_SASL_PASSWORD", "kafka.sasl.password", func(c *Config, v string) { c.Kafka.SASL.Password = v }},
		{"WALHOOK_REGISTRY_URL", "schema_registry.url", func(c *Config, v string) { c.SchemaRegistry.URL = v }},
		{"WALHOOK_REGISTRY_USERNAME", "schema_registry.username", func(c *Config, v string) { c.SchemaRegistry.Username = v }},
		{"WALHOOK_REGISTRY_PASSWORD", "schema_registry.password", func(c *Config, v string) { c.SchemaRegistry.Password = v }},
		{"WALHOOK_HTTP_LISTEN", "http.listen", func(c *Config, v string) { c.HTTP.Listen = v }},
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
	if c.src == nil {
		c.src = &source{lines: map[string]int{}, env: map[string]string{}}
	}
	for _, ev := range envVars() {
		if v, ok := lookup(ev.name); ok {
			ev.set(c, v)
			c.src.env[ev.path] = ev.name
		}
	}
}

// splitList splits a comma-separated list, trimming blanks and dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
