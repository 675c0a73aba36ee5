package kafkaconn

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
)

// SchemaTopic holds the Avro schemas (keyed by fingerprint) when no schema registry is configured.
func SchemaTopic(k config.Kafka) string { return k.TopicPrefix + "schemas" }

// SchemaRegistryClient is the Confluent-compatible registry client of cfg, or nil when
// schema_registry.url is empty.
func SchemaRegistryClient(cfg config.SchemaRegistry) (*sr.Client, error) {
	if cfg.URL == "" {
		return nil, nil
	}
	opts := []sr.ClientOpt{sr.URLs(cfg.URL)}
	if cfg.Username != "" {
		opts = append(opts, sr.BasicAuth(cfg.Username, cfg.Password))
	}
	c, err := sr.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("schema_registry.url %q: %w", cfg.URL, err)
	}
	return c, nil
}

// AvroRegistry is how every stage frames Avro records: the Confluent wire format through the
// registry at schema_registry.url when set, else single-object encoding with the schemas kept in
// SchemaTopic. cl must not be transactional (the topic registry produces with it).
func AvroRegistry(cfg *config.Config, cl *kgo.Client) (avro.Registry, error) {
	c, err := SchemaRegistryClient(cfg.SchemaRegistry)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return avro.NewTopicRegistry(cl, SchemaTopic(cfg.Kafka)), nil
	}
	return avro.NewConfluentRegistry(c), nil
}
