// Package config is walhook's configuration: one YAML file, overridden by WALHOOK_* environment
// variables for secrets and addresses. It declares the PostgreSQL source, Kafka, the schema
// registry, process settings and the entity model (roots, subordinates, references).
//
// It owns parsing, defaults and validation. It must not import any stage package (cdc, pipeline,
// sinks): stages import it.
package config

import "time"

// Config is the whole file. Field docs give each key's default; docs/configuration.md is the
// reference for users.
type Config struct {
	Postgres       Postgres       `yaml:"postgres"`
	Kafka          Kafka          `yaml:"kafka"`
	SchemaRegistry SchemaRegistry `yaml:"schema_registry"`
	HTTP           HTTP           `yaml:"http"`
	Log            Log            `yaml:"log"`
	CDC            CDC            `yaml:"cdc"`
	BubbleUp       BubbleUp       `yaml:"bubbleup"`
	Model          Model          `yaml:"model"`

	// src records the file lines and environment overrides behind the values so that problems
	// found later point at them. Set by Parse; nil for a Config built in code.
	src *source
}

// Postgres is the source database.
type Postgres struct {
	// URL is a libpq connection URL. Env: WALHOOK_PG_URL. Required.
	URL string `yaml:"url"`
	// Publication is the pgoutput publication walhook reads. Default "walhook".
	Publication string `yaml:"publication"`
	// Slot is the logical replication slot. Default "walhook".
	Slot string `yaml:"slot"`
}

// Kafka is the Kafka-protocol cluster (Apache Kafka, Redpanda, MSK, kfake).
type Kafka struct {
	// Brokers are seed addresses host:port. Env: WALHOOK_BROKERS (comma-separated). Required.
	Brokers []string `yaml:"brokers"`
	// ClientID identifies walhook to the brokers. Default "walhook".
	ClientID string `yaml:"client_id"`
	// TopicPrefix is put in front of every topic walhook creates. Default "walhook.".
	TopicPrefix string `yaml:"topic_prefix"`
	// Partitions of topics walhook creates. Default 6.
	Partitions int32 `yaml:"partitions"`
	// ReplicationFactor of topics walhook creates; -1 uses the broker default. Default -1.
	ReplicationFactor int16 `yaml:"replication_factor"`
	TLS               TLS   `yaml:"tls"`
	SASL              SASL  `yaml:"sasl"`
}

// TLS for the Kafka connection.
type TLS struct {
	// Enabled turns TLS on. Default false.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of CAs to trust; empty uses the system pool.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate for mutual TLS; both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the broker certificate.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify disables certificate checks. Default false; never in production.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// SASL authentication for Kafka.
type SASL struct {
	// Mechanism is "", "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512". Default "" (no SASL).
	Mechanism string `yaml:"mechanism"`
	// Username. Env: WALHOOK_KAFKA_SASL_USERNAME.
	Username string `yaml:"username"`
	// Password. Env: WALHOOK_KAFKA_SASL_PASSWORD. Redacted in logs.
	Password string `yaml:"password"`
}

// SchemaRegistry is a Confluent-compatible schema registry. When URL is empty, records use Avro
// single-object encoding instead of the Confluent wire format.
type SchemaRegistry struct {
	// URL of the registry. Env: WALHOOK_REGISTRY_URL. Default "" (no registry).
	URL string `yaml:"url"`
	// Username and Password for basic auth. Env: WALHOOK_REGISTRY_USERNAME, WALHOOK_REGISTRY_PASSWORD.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// HTTP is the process's operational endpoint: /metrics, /healthz, /readyz.
type HTTP struct {
	// Listen address. Env: WALHOOK_HTTP_LISTEN. Default "127.0.0.1:9464"; "" disables it.
	Listen string `yaml:"listen"`
}

// Log settings.
type Log struct {
	// Level is debug, info, warn or error. Default "info".
	Level string `yaml:"level"`
	// Format is "json" or "console". Default "json" ("console" in walhook dev).
	Format string `yaml:"format"`
}

// CDC settings of the logical-replication reader.
type CDC struct {
	// SnapshotChunkRows is how many rows one initial-snapshot chunk reads. Default 10000.
	SnapshotChunkRows int `yaml:"snapshot_chunk_rows"`
	// SpillDir holds in-progress streamed transactions past MemoryLimitBytes. Default: a
	// directory under the OS temp dir.
	SpillDir string `yaml:"spill_dir"`
	// MemoryLimitBytes bounds the in-memory part of in-progress transactions. Default 64 MiB.
	MemoryLimitBytes int64 `yaml:"memory_limit_bytes"`
	// StatusInterval is how often standby status (the confirmed LSN) is sent. Default 1s.
	StatusInterval time.Duration `yaml:"status_interval"`
	// HeartbeatInterval is how often a pg_logical_emit_message heartbeat is written so the slot
	// advances while the model's tables are idle. Default 10s; 0 disables.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// ManageReplicaIdentity sets REPLICA IDENTITY FULL on subordinate tables whose deletes would
	// otherwise lack the parent key. Default false (start fails with the statement to run).
	ManageReplicaIdentity bool `yaml:"manage_replica_identity"`
}

// BubbleUp settings of the bubble-up stage (package pipeline). Call SetDefaults (or Config's) to
// fill unset fields.
type BubbleUp struct {
	// Group is the stage's consumer group name; the Kafka group id is kafka.topic_prefix + Group
	// and the state changelog topic is kafka.topic_prefix + Group + ".changelog". Every member of
	// one bubble-up deployment uses the same Group. Default "bubbleup".
	Group string `yaml:"group"`
	// StateDir holds the local state store (Pebble). It is a cache of the changelog topic and is
	// rebuilt from it on every partition assignment. Default: a fresh directory under the OS temp
	// dir, removed on exit.
	StateDir string `yaml:"state_dir"`
	// EmitReads makes rows of the initial snapshot (op read) emit "created" snapshots, one per
	// root. Default false: they only build state.
	EmitReads bool `yaml:"emit_reads"`
	// TransactionTimeout is the Kafka transaction timeout of the stage's producer. Default 60s.
	TransactionTimeout time.Duration `yaml:"transaction_timeout"`
	// MaxPollRecords bounds the records consumed in one Kafka transaction. Default 10000.
	MaxPollRecords int `yaml:"max_poll_records"`
}

// The bubble-up defaults.
const (
	DefaultBubbleUpGroup              = "bubbleup"
	DefaultBubbleUpTransactionTimeout = 60 * time.Second
	DefaultBubbleUpMaxPollRecords     = 10000
)

// SetDefaults fills every unset bubble-up field with its default.
func (b *BubbleUp) SetDefaults() {
	if b.Group == "" {
		b.Group = DefaultBubbleUpGroup
	}
	if b.TransactionTimeout == 0 {
		b.TransactionTimeout = DefaultBubbleUpTransactionTimeout
	}
	if b.MaxPollRecords == 0 {
		b.MaxPollRecords = DefaultBubbleUpMaxPollRecords
	}
}

// Model is the entity model: which tables form which root objects.
type Model struct {
	Roots []Root `yaml:"roots"`
}

// SnapshotForm is how an updated root's payload is shaped.
type SnapshotForm string

const (
	// FormBare sends the current object.
	FormBare SnapshotForm = "bare"
	// FormOldNew sends {"old": previous, "new": current}.
	FormOldNew SnapshotForm = "old_new"
)

// Root is a table whose rows are the objects webhooks are about.
type Root struct {
	// Table is schema-qualified ("incident.instance"). Required.
	Table string `yaml:"table"`
	// EventPrefix is "<service>.<resource>" ("incident.instance"); events are EventPrefix+".created"
	// and so on. Default: Table. Unique across roots.
	EventPrefix string `yaml:"event_prefix"`
	// Key is the primary-key column. Required.
	Key string `yaml:"key"`
	// TenantColumn holds the tenant; never in a payload. Default "tenant_id".
	TenantColumn string `yaml:"tenant_column"`
	// SoftDeleteColumn turning true means deleted; never in a payload. Default "is_deleted"; "-"
	// means the table has none.
	SoftDeleteColumn string `yaml:"soft_delete_column"`
	// Exclude lists further columns left out of payloads.
	Exclude []string `yaml:"exclude"`
	// SnapshotForm is "bare" or "old_new". Default "bare".
	SnapshotForm SnapshotForm `yaml:"snapshot_form"`
	// Subordinates are child tables that bubble up into this root.
	Subordinates []Subordinate `yaml:"subordinates"`
	// References are lightweight snapshots of rows owned by other services.
	References []Reference `yaml:"references"`
}

// Subordinate is a child table whose rows appear as an array in its parent's payload.
type Subordinate struct {
	// Table is schema-qualified ("incident.timeline"). Required.
	Table string `yaml:"table"`
	// Key is the child's primary-key column. Default "id".
	Key string `yaml:"key"`
	// ParentColumn holds the parent's key ("incident_instance_id"). Required.
	ParentColumn string `yaml:"parent_column"`
	// Array is the field name in the parent's payload ("timeline"). Required.
	Array string `yaml:"array"`
	// OrderBy is the column the array is sorted by. Default: Key.
	OrderBy string `yaml:"order_by"`
	// TenantColumn, as on Root. Default "tenant_id".
	TenantColumn string `yaml:"tenant_column"`
	// SoftDeleteColumn: soft-deleted children are left out of the array. Default "is_deleted"; "-"
	// for none.
	SoftDeleteColumn string `yaml:"soft_delete_column"`
	// Exclude lists further columns left out of payloads.
	Exclude []string `yaml:"exclude"`
	// Subordinates nest (a project's technologies).
	Subordinates []Subordinate `yaml:"subordinates"`
}

// Reference is a cross-service reference: a root column pointing at a row of another table,
// shown in the payload as a projection of that row.
type Reference struct {
	// Table is the referenced table ("session.instance"). Required.
	Table string `yaml:"table"`
	// Column is the root's foreign-key column ("session_instance_id"). Required.
	Column string `yaml:"column"`
	// Key is the referenced table's key column. Default "id".
	Key string `yaml:"key"`
	// Field is the payload field name ("session"). Required.
	Field string `yaml:"field"`
	// Columns are the projected columns. Required, non-empty.
	Columns []string `yaml:"columns"`
	// Reemit re-emits the roots pointing at a referenced row when that row changes. Default false.
	Reemit bool `yaml:"reemit"`
}
