package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Validate checks the whole configuration and returns a *ValidationError listing every problem,
// or nil. It checks what can be known without a database; CheckDatabase checks tables and
// columns. Run it after defaults are applied (Parse does both).
func (c *Config) Validate() error {
	v := &checker{src: c.src}
	v.postgres(&c.Postgres)
	v.kafka(&c.Kafka)
	v.registry(&c.SchemaRegistry)
	v.http(&c.HTTP)
	v.log(&c.Log)
	v.cdc(&c.CDC)
	v.bubbleup(&c.BubbleUp)
	v.deliver(&c.Deliver)
	v.api(&c.API)
	v.compliance(&c.Compliance, &c.Model)
	v.model(&c.Model)
	return v.err()
}

// checker collects problems; each check adds to it and never stops the others.
type checker struct {
	src      *source
	problems []Problem
}

func (v *checker) add(path, format string, args ...any) {
	v.problems = append(v.problems, v.src.problem(path, fmt.Sprintf(format, args...)))
}

func (v *checker) err() error {
	return (&ValidationError{Source: v.src.sourceName(), Problems: v.problems}).orNil()
}

// slotNameRE is PostgreSQL's rule for replication slot names.
var slotNameRE = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// identRE is an unquoted PostgreSQL identifier. walhook builds SQL from model names, so only
// names that need no quoting are accepted.
var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]{0,62}$`)

func (v *checker) postgres(p *Postgres) {
	switch {
	case p.URL == "":
		v.add("postgres.url", "missing; set postgres.url or WALHOOK_PG_URL, e.g. postgres://walhook@db:5432/app")
	case strings.Contains(p.URL, "://"):
		if _, err := url.Parse(p.URL); err != nil {
			v.add("postgres.url", "not a valid URL (%v); use postgres://user@host:5432/dbname", unwrapURLError(err))
		}
	}
	if !identRE.MatchString(p.Publication) {
		v.add("postgres.publication", "%q is not a valid publication name; use letters, digits and underscores, e.g. walhook", p.Publication)
	}
	if !slotNameRE.MatchString(p.Slot) {
		v.add("postgres.slot", "%q is not a valid replication slot name; use lowercase letters, digits and underscores (at most 63), e.g. walhook", p.Slot)
	}
}

// topicRE is the set of characters Kafka allows in topic names.
var topicRE = regexp.MustCompile(`^[A-Za-z0-9._-]*$`)

// The consumer-group protocols kafka.group_protocol accepts.
const (
	GroupProtocolClassic  = "classic"
	GroupProtocolConsumer = "consumer"
)

// maxInstanceIDLen is the longest group.instance.id Kafka accepts; its characters are those of
// topic names.
const maxInstanceIDLen = 249

func (v *checker) kafka(k *Kafka) {
	if len(k.Brokers) == 0 {
		v.add("kafka.brokers", "empty; list at least one broker as host:port, or set WALHOOK_BROKERS=host1:9092,host2:9092")
	}
	for i, b := range k.Brokers {
		if msg := checkHostPort(b); msg != "" {
			v.add(indexPath("kafka.brokers", i), "%q %s; write host:port, e.g. kafka-0:9092", b, msg)
		}
	}
	if !topicRE.MatchString(k.TopicPrefix) {
		v.add("kafka.topic_prefix", "%q has characters Kafka does not allow in topic names; use letters, digits, '.', '_' and '-'", k.TopicPrefix)
	}
	if k.InstanceID != "" && (len(k.InstanceID) > maxInstanceIDLen || !topicRE.MatchString(k.InstanceID)) {
		v.add("kafka.instance_id", "%q is not a valid group instance id; use at most %d letters, digits, '.', '_' and '-', unique per process of a stage (e.g. the pod name), or leave it empty for dynamic membership", k.InstanceID, maxInstanceIDLen)
	}
	if k.MaxRecordBytes < MinMaxRecordBytes || k.MaxRecordBytes > MaxMaxRecordBytes {
		v.add("kafka.max_record_bytes", "%d; use %d to %d bytes, at most the max.message.bytes of walhook's topics (default %d)",
			k.MaxRecordBytes, MinMaxRecordBytes, MaxMaxRecordBytes, DefaultMaxRecordBytes)
	}
	if !slices.Contains(Compressions, k.Compression) {
		v.add("kafka.compression", "%q is not supported; use one of %s (default %s)", k.Compression, strings.Join(Compressions, ", "), DefaultCompression)
	}
	if k.GroupProtocol != GroupProtocolClassic && k.GroupProtocol != GroupProtocolConsumer {
		v.add("kafka.group_protocol", "%q; use %q (every broker) or %q (KIP-848, Apache Kafka 4.0+)", k.GroupProtocol, GroupProtocolClassic, GroupProtocolConsumer)
	}
	if k.Partitions < 1 {
		v.add("kafka.partitions", "%d; must be at least 1 (default 6)", k.Partitions)
	}
	if k.ReplicationFactor < -1 {
		v.add("kafka.replication_factor", "%d; use a positive factor, or -1 for the broker default", k.ReplicationFactor)
	}
	v.tls(&k.TLS)
	v.sasl(&k.SASL)
}

func (v *checker) tls(t *TLS) {
	if t.CertFile != "" && t.KeyFile == "" {
		v.add("kafka.tls.key_file", "missing while cert_file is set; a client certificate needs its private key")
	}
	if t.KeyFile != "" && t.CertFile == "" {
		v.add("kafka.tls.cert_file", "missing while key_file is set; set both for mutual TLS, or neither")
	}
	set := t.CAFile != "" || t.CertFile != "" || t.ServerName != "" || t.InsecureSkipVerify
	if set && !t.Enabled {
		v.add("kafka.tls.enabled", "false while other kafka.tls keys are set; set enabled: true or remove them")
	}
}

// saslMechanisms are the mechanisms the Kafka client is wired for.
var saslMechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}

func (v *checker) sasl(s *SASL) {
	if s.Mechanism == "" {
		if s.Username != "" || s.Password != "" {
			v.add("kafka.sasl.mechanism", "missing while a SASL username or password is set; use one of %s", strings.Join(saslMechanisms, ", "))
		}
		return
	}
	if !slices.Contains(saslMechanisms, s.Mechanism) {
		v.add("kafka.sasl.mechanism", "%q is not supported; use one of %s", s.Mechanism, strings.Join(saslMechanisms, ", "))
	}
	if s.Username == "" {
		v.add("kafka.sasl.username", "missing for SASL %s; set it or WALHOOK_KAFKA_SASL_USERNAME", s.Mechanism)
	}
	if s.Password == "" {
		v.add("kafka.sasl.password", "missing for SASL %s; set WALHOOK_KAFKA_SASL_PASSWORD", s.Mechanism)
	}
}

func (v *checker) registry(r *SchemaRegistry) {
	if r.URL != "" {
		if u, err := url.Parse(r.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add("schema_registry.url", "%q is not an http(s) URL; write e.g. https://registry:8081", r.URL)
		}
	}
	if (r.Username == "") != (r.Password == "") {
		v.add("schema_registry", "username and password go together; set both (WALHOOK_REGISTRY_USERNAME, WALHOOK_REGISTRY_PASSWORD) or neither")
	}
	if r.URL == "" && r.Username != "" {
		v.add("schema_registry.url", "missing while credentials are set; set the registry URL or remove the credentials")
	}
}

func (v *checker) http(h *HTTP) {
	if h.Listen == "" {
		return
	}
	if msg := checkListen(h.Listen); msg != "" {
		v.add("http.listen", "%q %s; write host:port such as 127.0.0.1:9464 or :9464, or \"\" to disable", h.Listen, msg)
	}
}

func (v *checker) log(l *Log) {
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, l.Level) {
		v.add("log.level", "%q is not a level; use debug, info, warn or error", l.Level)
	}
	if !slices.Contains([]string{"json", "console"}, l.Format) {
		v.add("log.format", "%q is not a format; use json or console", l.Format)
	}
}

func (v *checker) cdc(c *CDC) {
	if c.SnapshotChunkRows < 1 {
		v.add("cdc.snapshot_chunk_rows", "%d; must be at least 1 (default 10000)", c.SnapshotChunkRows)
	}
	if c.MemoryLimitBytes < 1 {
		v.add("cdc.memory_limit_bytes", "%d; must be positive (default 67108864, 64 MiB)", c.MemoryLimitBytes)
	}
	if c.StatusInterval <= 0 {
		v.add("cdc.status_interval", "%s; must be positive (default 1s)", c.StatusInterval)
	}
	if c.HeartbeatInterval < 0 {
		v.add("cdc.heartbeat_interval", "%s; must be positive, or 0s to disable heartbeats", c.HeartbeatInterval)
	}
	if c.WatermarkInterval < 0 {
		v.add("cdc.watermark_interval", "%s; must be positive (default 5ms)", c.WatermarkInterval)
	}
}

// checkHostPort returns what is wrong with a dial address, or "".
func checkHostPort(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "is not host:port"
	}
	if host == "" {
		return "has no host"
	}
	return checkPort(port)
}

// checkListen is checkHostPort where an empty host (all interfaces) is fine.
func checkListen(s string) string {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return "is not host:port"
	}
	return checkPort(port)
}

func checkPort(port string) string {
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return "has an invalid port"
	}
	return ""
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
