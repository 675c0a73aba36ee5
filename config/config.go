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
	Deliver        Deliver        `yaml:"deliver"`
	Compliance     Compliance     `yaml:"compliance"`
	API            API            `yaml:"api"`
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
	// InstanceID makes the consumer-group member of the bubbleup, deliver and comply stages
	// static (Kafka's group.instance.id): a process that restarts with the same id replaces its
	// killed incarnation as soon as it joins, instead of the group waiting for the dead member's
	// session timeout; a process that stops does not leave its group, so its partitions wait for
	// its return or for the stage's session_timeout. It must be unique among the processes of
	// one stage. Env: WALHOOK_INSTANCE_ID (e.g. a StatefulSet pod name). Default "": dynamic
	// membership.
	InstanceID string `yaml:"instance_id"`
	// GroupProtocol is the consumer-group protocol of the bubbleup, deliver and comply stages:
	// "classic" (JoinGroup/SyncGroup, every broker) or "consumer" (KIP-848: the broker's group
	// coordinator assigns partitions incrementally, no stop-the-world rebalance; Apache Kafka 4.0+,
	// recommended from 4.3). With "consumer" the broker's group.consumer.session.timeout.ms and
	// group.consumer.heartbeat.interval.ms apply instead of the stages' session_timeout.
	// Default "classic".
	GroupProtocol string `yaml:"group_protocol"`
	// TopicPrefix is put in front of every topic walhook creates. Default "walhook.".
	TopicPrefix string `yaml:"topic_prefix"`
	// Partitions of topics walhook creates. Default 6.
	Partitions int32 `yaml:"partitions"`
	// ReplicationFactor of topics walhook creates; -1 uses the broker default. Default -1.
	ReplicationFactor int16 `yaml:"replication_factor"`
	// MaxRecordBytes is the largest record (key, value, headers and batch framing) walhook
	// produces; a larger value is carried as chunk records its consumers reassemble. It must not
	// exceed the max.message.bytes of walhook's topics: walhook sets it on the topics it creates
	// and checks it on existing ones at start. Default 1048576 (1 MiB, below Kafka's default
	// max.message.bytes of 1048588); at least 65536.
	MaxRecordBytes int `yaml:"max_record_bytes"`
	// Compression of the record batches walhook produces: "none", "gzip", "snappy", "lz4" or
	// "zstd". The topics walhook creates get compression.type=producer, so the brokers keep the
	// batches as the producers wrote them. Default "lz4".
	Compression string `yaml:"compression"`
	TLS         TLS    `yaml:"tls"`
	SASL        SASL   `yaml:"sasl"`
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
	// WatermarkInterval is the longest a committed transaction waits before a watermark at its
	// commit LSN is written to every reference topic (bubble-up holds a snapshot until the
	// reference topics reach its LSN). Watermarks of transactions closer together than this are
	// coalesced into one. Default 5ms.
	WatermarkInterval time.Duration `yaml:"watermark_interval"`
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
	// TransactionTimeout is the Kafka transaction timeout of the stage's producer. It also bounds
	// how long a partition's new owner waits, before restoring, for a transaction a killed owner
	// left open (a restarted static member aborts it at once). Default 60s.
	TransactionTimeout time.Duration `yaml:"transaction_timeout"`
	// MaxPollRecords bounds the records consumed in one Kafka transaction. Default 10000.
	MaxPollRecords int `yaml:"max_poll_records"`
	// SessionTimeout is how long the consumer group waits for a silent (killed) member before it
	// moves that member's partitions; also the rebalance timeout; members heartbeat every tenth
	// of it. Between 6s and 5m on a default broker. Default 10s (franz-go's 45s would leave a
	// killed member's partitions unprocessed that long).
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// ReferenceHistory is the history bound of cross-service references: every version of a
	// referenced row stays available this long after a newer version superseded it, in the
	// stage's reference store and in the reference topics (walhook sets their
	// min.compaction.lag.ms to it and raises it at start when lower). A snapshot built within it
	// of its source transaction's commit shows each reference exactly as of that transaction;
	// beyond it the stage shows the newest version it has and counts it (see
	// ReferenceHistoryExceeded). Size it above the longest time bubble-up may run behind cdc.
	// Default 24h.
	ReferenceHistory time.Duration `yaml:"reference_history"`
	// ReferenceHistoryExceeded says what a snapshot does when a reference's version as of its
	// transaction is beyond ReferenceHistory (compacted or pruned away): "newest" shows the newest
	// version the stage has (the contract's minimum), logs it and counts it in
	// walhook_bubbleup_reference_inexact_total and `walhook status`; "stop" stops the stage with
	// an error instead. Default "newest".
	ReferenceHistoryExceeded string `yaml:"reference_history_exceeded"`
	// OnPoison says what the stage does with a record it cannot process: one it cannot decode
	// (another producer's, an unknown schema id, garbage, a corrupt chunk) or one the broker
	// refuses for good when its output is produced (MESSAGE_TOO_LARGE, INVALID_RECORD).
	// "dead_letter" copies it, byte for byte with headers naming its topic, partition, offset
	// and the reason, to the stage's poison topic (kafka.topic_prefix + group + ".poison") in
	// the transaction that commits its offset, counts it and goes on; "stop" stops the stage
	// with an error naming the record and the command that skips it. Default "dead_letter".
	OnPoison string `yaml:"on_poison"`
}

// The bubble-up defaults.
const (
	DefaultBubbleUpGroup              = "bubbleup"
	DefaultBubbleUpTransactionTimeout = 60 * time.Second
	DefaultBubbleUpMaxPollRecords     = 10000
	DefaultBubbleUpReferenceHistory   = 24 * time.Hour
	// ReferenceHistoryNewest and ReferenceHistoryStop are the values of
	// bubbleup.reference_history_exceeded.
	ReferenceHistoryNewest = "newest"
	ReferenceHistoryStop   = "stop"
	// DefaultGroupSessionTimeout is the consumer-group session and rebalance timeout of every
	// stage's group (bubbleup, deliver, compliance).
	DefaultGroupSessionTimeout = 10 * time.Second
)

// SetDefaults fills every unset bubble-up field with its default.
func (b *BubbleUp) SetDefaults() {
	if b.Group == "" {
		b.Group = DefaultBubbleUpGroup
	}
	if b.TransactionTimeout == 0 {
		b.TransactionTimeout = DefaultBubbleUpTransactionTimeout
	}
	if b.SessionTimeout == 0 {
		b.SessionTimeout = DefaultGroupSessionTimeout
	}
	if b.MaxPollRecords == 0 {
		b.MaxPollRecords = DefaultBubbleUpMaxPollRecords
	}
	if b.ReferenceHistory == 0 {
		b.ReferenceHistory = DefaultBubbleUpReferenceHistory
	}
	if b.ReferenceHistoryExceeded == "" {
		b.ReferenceHistoryExceeded = ReferenceHistoryNewest
	}
	if b.OnPoison == "" {
		b.OnPoison = DefaultOnPoison
	}
}

// Deliver settings of the webhook sink (package sinks/webhook). Defaults and validation are in
// deliver.go; call SetDefaults (or Config's) to fill unset fields.
type Deliver struct {
	// Group is the sink's consumer group name; the Kafka group id is kafka.topic_prefix + Group.
	// Default "webhook".
	Group string `yaml:"group"`
	// ConnectTimeout bounds the TCP connect and TLS handshake of one request. Default 5s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// RequestTimeout bounds one request, from connect to the end of the response. Default 30s.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// RetrySchedule is the delay before attempt 2, 3, …; a delivery gets len+1 attempts before
	// the dead-letter topic. Default 5s 30s 2m 10m 30m 1h 3h 6h 12h 24h 24h (12 attempts over
	// about 71 hours).
	RetrySchedule []time.Duration `yaml:"retry_schedule"`
	// RetryTiers are the delays of the retry topics (kafka.topic_prefix + "webhook.retry." +
	// tier): a retry waiting d goes to the largest tier not above d. Default 5s 1m 10m 1h 6h.
	RetryTiers []time.Duration `yaml:"retry_tiers"`
	// Jitter spreads each retry delay uniformly by ± this fraction. Default 0.2.
	Jitter float64 `yaml:"jitter"`
	// MaxRetryAfter caps a Retry-After asked for by a 429 or 503 answer. Default 24h.
	MaxRetryAfter time.Duration `yaml:"max_retry_after"`
	// AutoDisableAfter disables a subscription whose deliveries have failed continuously (no
	// success in between) for this long. Default 72h.
	AutoDisableAfter time.Duration `yaml:"auto_disable_after"`
	// EndpointConcurrency is the most requests in flight per endpoint (scheme, host and port).
	// The sink adapts the actual concurrency between 1 and this bound: it starts at a quarter,
	// grows while the endpoint answers without errors and latency stays near its best, and cuts
	// it by 30% on 429, 503, timeouts and connection errors. Default 64.
	EndpointConcurrency int `yaml:"endpoint_concurrency"`
	// EndpointRate is an optional fixed request rate limit per endpoint, in requests per second.
	// Default 0: no rate limit, the adaptive concurrency follows the receiver's capacity.
	EndpointRate float64 `yaml:"endpoint_rate"`
	// EndpointBurst is the burst of the rate limit. Default: EndpointRate rounded up.
	EndpointBurst int `yaml:"endpoint_burst"`
	// EndpointQueue is how many deliveries may wait per endpoint before the partitions that feed
	// it pause fetching (they resume below half). Deliveries are never refused or retried for a
	// full queue: they wait. Default 1000.
	EndpointQueue int `yaml:"endpoint_queue"`
	// EndpointTenantShare is the fraction of an endpoint's concurrency one tenant may hold while
	// other tenants' deliveries to the same endpoint wait; waiting tenants are served round-robin.
	// A tenant alone on an endpoint may use all of it. Default 0.5.
	EndpointTenantShare float64 `yaml:"endpoint_tenant_share"`
	// EndpointIdleTimeout releases an endpoint's queue, limits and metric series after it had
	// nothing pending for this long. Default 5m.
	EndpointIdleTimeout time.Duration `yaml:"endpoint_idle_timeout"`
	// SubscriptionSync is how long, at most, a snapshot newer than the sink's subscription index
	// waits before the sink confirms the index is current up to PostgreSQL's WAL position (one
	// round trip; subscription lifetime, see docs/operations.md). Default 10ms.
	SubscriptionSync time.Duration `yaml:"subscription_sync"`
	// SubscriptionLifetime is how a subscription's start and end are decided. "commit_lsn" (the
	// default): it gets exactly the versions whose source transaction committed after it was
	// enabled and not after it was disabled, by WAL position, however late the sink learns of
	// the change; the hook tables must be in the source database's PostgreSQL cluster. "read":
	// by the subscription's state when the sink reads the snapshot (hook tables elsewhere).
	SubscriptionLifetime string `yaml:"subscription_lifetime"`
	// CircuitFailures consecutive failed attempts open an endpoint's circuit: for CircuitCooldown
	// its deliveries are deferred to the retry topics without a request, and without using up
	// one of their attempts. Default 5.
	CircuitFailures int `yaml:"circuit_failures"`
	// CircuitCooldown is how long an open circuit stays open. Default 30s.
	CircuitCooldown time.Duration `yaml:"circuit_cooldown"`
	// MaxPayloadBytes is the largest request body sent (1 MiB is what common API gateways take);
	// a larger delivery is, by its subscription's oversize setting, dead-lettered with the reason
	// (dead_letter, the default) or sent as a thin event naming the root and version (thin).
	// Default 1048576 (1 MiB).
	MaxPayloadBytes int `yaml:"max_payload_bytes"`
	// MaxPending bounds the unfinished deliveries per consumed partition; fetching from it pauses
	// above the bound. It bounds the sink's memory in a burst (about 2 KiB per delivery). Default 4000.
	MaxPending int `yaml:"max_pending"`
	// AllowLoopback permits loopback targets, over plain HTTP too. Default false (true in walhook
	// dev); never in production.
	AllowLoopback bool `yaml:"allow_loopback"`
	// AllowCIDRs are networks (CIDR) that may be targeted although private, link-local or
	// otherwise refused. Default none.
	AllowCIDRs []string `yaml:"allow_cidrs"`
	// ReloadInterval is how often subscriptions are fully reloaded besides LISTEN/NOTIFY. Default 30s.
	ReloadInterval time.Duration `yaml:"reload_interval"`
	// RotationGrace is how long the previous secret keeps signing after rotate-secret. Default 24h.
	RotationGrace time.Duration `yaml:"rotation_grace"`
	// SessionTimeout is how long the consumer group waits for a silent member (a killed or
	// partitioned deliver process) before it hands that member's partitions to the others. It is
	// also the rebalance timeout (how long a live member may take to rejoin); members heartbeat
	// every tenth of it. Between 6s and 5m on a default broker (group.min/max.session.timeout.ms).
	// Default 10s.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// OnPoison says what the stage does with a record it cannot process: one it cannot decode
	// (another producer's, an unknown schema id, garbage, a corrupt chunk) or one the broker
	// refuses for good when its output is produced (MESSAGE_TOO_LARGE, INVALID_RECORD).
	// "dead_letter" copies it, byte for byte with headers naming its topic, partition, offset
	// and the reason, to the stage's poison topic (kafka.topic_prefix + group + ".poison") before
	// its offset is committed, counts it and goes on; "stop" stops the stage
	// with an error naming the record and the command that skips it. Default "dead_letter".
	OnPoison string `yaml:"on_poison"`
}

// Compliance settings of the compliance sink (package sinks/compliance): every snapshot version
// of the selected roots, Avro-encoded and keyed by root key, on an append-only topic, and the
// latest version of each root on a compacted one. Defaults and validation are in compliance.go;
// call SetDefaults (or Config's ValidateCompliance) before use.
type Compliance struct {
	// Group is the sink's consumer group name; the Kafka group id is kafka.topic_prefix + Group.
	// Default "compliance".
	Group string `yaml:"group"`
	// Roots are the event prefixes of the roots written to compliance topics. Default: every
	// root of the model.
	Roots []string `yaml:"roots"`
	// Log is the append-only topic of every version. Its default name is
	// kafka.topic_prefix + "compliance.{event_prefix}", cleanup.policy=delete, retention infinite.
	Log ComplianceTopic `yaml:"log"`
	// Latest is the compacted topic of the latest version per root. Its default name is
	// kafka.topic_prefix + "compliance.{event_prefix}.latest", cleanup.policy=compact.
	Latest ComplianceTopic `yaml:"latest"`
	// TombstoneDeleted writes a tombstone (null value) for the root key to the latest topic
	// right after a deleted version, so compaction eventually forgets the root. Default false.
	TombstoneDeleted bool `yaml:"tombstone_deleted"`
	// TransactionTimeout is the Kafka transaction timeout of the sink's producer. Default 60s.
	TransactionTimeout time.Duration `yaml:"transaction_timeout"`
	// SessionTimeout is how long the consumer group waits for a silent (killed) member before it
	// moves that member's partitions; also the rebalance timeout; members heartbeat every tenth
	// of it. Between 6s and 5m on a default broker. Default 10s (franz-go's 45s would leave a
	// killed member's partitions unprocessed that long).
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// OnPoison says what the stage does with a record it cannot process: one it cannot decode
	// (another producer's, an unknown schema id, garbage, a corrupt chunk) or one the broker
	// refuses for good when its output is produced (MESSAGE_TOO_LARGE, INVALID_RECORD).
	// "dead_letter" copies it, byte for byte with headers naming its topic, partition, offset
	// and the reason, to the stage's poison topic (kafka.topic_prefix + group + ".poison") in
	// the transaction that commits its offset, counts it and goes on; "stop" stops the stage
	// with an error naming the record and the command that skips it. Default "dead_letter".
	OnPoison string `yaml:"on_poison"`
}

// ComplianceTopic is one of the two compliance topics of each root.
type ComplianceTopic struct {
	// Name is the topic name template after kafka.topic_prefix; "{event_prefix}" is replaced by
	// the root's event prefix and must appear once. Defaults: log "compliance.{event_prefix}",
	// latest "compliance.{event_prefix}.latest".
	Name string `yaml:"name"`
	// Partitions when walhook creates the topic. Default: kafka.partitions.
	Partitions int32 `yaml:"partitions"`
	// Retention is retention.ms of the log topic when walhook creates it. Default 0: infinite
	// (retention.ms=-1). Not allowed on the latest topic, which is compacted.
	Retention time.Duration `yaml:"retention"`
	// KeepColumns are columns hidden from webhook payloads that this topic's records keep. Only
	// a root's tenant column can be kept: the snapshot topic carries the tenant but no other
	// hidden column. Default none.
	KeepColumns []string `yaml:"keep_columns"`
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

// BubbleUpGroup is the bubble-up stage's Kafka consumer group id.
func (c *Config) BubbleUpGroup() string { return c.Kafka.TopicPrefix + c.BubbleUp.Group }
