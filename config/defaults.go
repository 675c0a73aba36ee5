package config

import "time"

// The defaults, as documented on each field in config.go and in docs/configuration.md.
const (
	DefaultPublication       = "walhook"
	DefaultSlot              = "walhook"
	DefaultClientID          = "walhook"
	DefaultTopicPrefix       = "walhook."
	DefaultGroupProtocol     = GroupProtocolClassic
	DefaultPartitions        = 6
	DefaultMaxRecordBytes    = 1 << 20
	DefaultCompression       = "lz4"
	DefaultReplicationFactor = -1
	DefaultHTTPListen        = "127.0.0.1:9464"
	DefaultLogLevel          = "info"
	DefaultLogFormat         = "json"
	DefaultSnapshotChunkRows = 10000
	DefaultMemoryLimitBytes  = 64 << 20
	DefaultStatusInterval    = time.Second
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultWatermarkInterval = 5 * time.Millisecond
	DefaultTenantColumn      = "tenant_id"
	DefaultSoftDeleteColumn  = "is_deleted"
	DefaultKey               = "id"
	// NoColumn as soft_delete_column means the table has no soft-delete column.
	NoColumn = "-"
)

// SetDefaults fills every unset field with its default. A zero value counts as unset, except
// for keys written explicitly in the file or set by the environment: `listen: ""` disables the
// HTTP endpoint and `heartbeat_interval: 0s` disables heartbeats. A Config built in code that
// wants either disabled sets it after SetDefaults. replication_factor 0 is not a valid factor, so
// 0 always means "not set" and becomes -1 (the broker default).
//
// Parse calls it; call it yourself only on a Config built in code, before Validate.
func (c *Config) SetDefaults() { c.applyDefaults() }

func (c *Config) applyDefaults() {
	c.Postgres.defaults()
	c.Kafka.defaults()
	if c.HTTP.Listen == "" && !c.src.explicit("http.listen") {
		c.HTTP.Listen = DefaultHTTPListen
	}
	setString(&c.Log.Level, DefaultLogLevel)
	setString(&c.Log.Format, DefaultLogFormat)
	c.CDC.defaults(c.src.explicit("cdc.heartbeat_interval"))
	c.BubbleUp.SetDefaults()
	c.Deliver.SetDefaults()
	c.Compliance.SetDefaults(c.Kafka)
	c.API.SetDefaults()
	for i := range c.Model.Roots {
		c.Model.Roots[i].defaults()
	}
}

func (p *Postgres) defaults() {
	setString(&p.Publication, DefaultPublication)
	setString(&p.Slot, DefaultSlot)
}

func (k *Kafka) defaults() {
	setString(&k.ClientID, DefaultClientID)
	setString(&k.TopicPrefix, DefaultTopicPrefix)
	if k.MaxRecordBytes == 0 {
		k.MaxRecordBytes = DefaultMaxRecordBytes
	}
	setString(&k.Compression, DefaultCompression)
	setString(&k.GroupProtocol, DefaultGroupProtocol)
	if k.Partitions == 0 {
		k.Partitions = DefaultPartitions
	}
	if k.ReplicationFactor == 0 {
		k.ReplicationFactor = DefaultReplicationFactor
	}
}

func (c *CDC) defaults(heartbeatExplicit bool) {
	if c.SnapshotChunkRows == 0 {
		c.SnapshotChunkRows = DefaultSnapshotChunkRows
	}
	if c.MemoryLimitBytes == 0 {
		c.MemoryLimitBytes = DefaultMemoryLimitBytes
	}
	if c.StatusInterval == 0 {
		c.StatusInterval = DefaultStatusInterval
	}
	if c.HeartbeatInterval == 0 && !heartbeatExplicit {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.WatermarkInterval == 0 {
		c.WatermarkInterval = DefaultWatermarkInterval
	}
}

func (r *Root) defaults() {
	setString(&r.EventPrefix, r.Table)
	setString(&r.TenantColumn, DefaultTenantColumn)
	setString(&r.SoftDeleteColumn, DefaultSoftDeleteColumn)
	if r.SnapshotForm == "" {
		r.SnapshotForm = FormBare
	}
	for i := range r.Subordinates {
		r.Subordinates[i].defaults()
	}
	for i := range r.References {
		setString(&r.References[i].Key, DefaultKey)
	}
}

func (s *Subordinate) defaults() {
	setString(&s.Key, DefaultKey)
	setString(&s.OrderBy, s.Key)
	setString(&s.TenantColumn, DefaultTenantColumn)
	setString(&s.SoftDeleteColumn, DefaultSoftDeleteColumn)
	for i := range s.Subordinates {
		s.Subordinates[i].defaults()
	}
}

func setString(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

// HasSoftDelete reports whether the root's table has a soft-delete column.
func (r *Root) HasSoftDelete() bool {
	return r.SoftDeleteColumn != "" && r.SoftDeleteColumn != NoColumn
}

// HasSoftDelete reports whether the subordinate's table has a soft-delete column.
func (s *Subordinate) HasSoftDelete() bool {
	return s.SoftDeleteColumn != "" && s.SoftDeleteColumn != NoColumn
}

// Bounds of kafka.max_record_bytes: below 64 KiB chunking would multiply records for ordinary
// values; above 64 MiB a record approaches franz-go's and the brokers' request limits.
const (
	MinMaxRecordBytes = 64 << 10
	MaxMaxRecordBytes = 64 << 20
)

// Compressions are the values kafka.compression accepts.
var Compressions = []string{"none", "gzip", "snappy", "lz4", "zstd"}
