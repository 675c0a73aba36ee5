package config

import (
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"time"
)

// The webhook sink defaults, as documented on Deliver's fields.
const (
	DefaultDeliverGroup           = "webhook"
	DefaultDeliverConnectTimeout  = 5 * time.Second
	DefaultDeliverRequestTimeout  = 30 * time.Second
	DefaultDeliverJitter          = 0.2
	DefaultDeliverMaxRetryAfter   = 24 * time.Hour
	DefaultDeliverAutoDisable     = 72 * time.Hour
	DefaultEndpointConcurrency    = 64
	DefaultEndpointQueue          = 1000
	DefaultEndpointTenantShare    = 0.5
	DefaultEndpointIdleTimeout    = 5 * time.Minute
	DefaultSubscriptionSync       = 10 * time.Millisecond
	DefaultCircuitFailures        = 5
	DefaultCircuitCooldown        = 30 * time.Second
	DefaultMaxPayloadBytes        = 1 << 20
	DefaultDeliverMaxPending      = 4000
	DefaultDeliverReloadInterval  = 30 * time.Second
	DefaultDeliverRotationGrace   = 24 * time.Hour
	DefaultDeliverSessionTimeout  = 10 * time.Second
	webhookTopicInfix             = "webhook."
	maxRetryScheduleLen           = 100
	minRetryTier                  = time.Second
	defaultRetryScheduleTotalHint = "about 71h"
)

// The values of Deliver.SubscriptionLifetime.
const (
	LifetimeCommitLSN = "commit_lsn"
	LifetimeRead      = "read"
)

// DefaultRetrySchedule is the default Deliver.RetrySchedule: 12 attempts over about 71 hours.
func DefaultRetrySchedule() []time.Duration {
	return []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute,
		30 * time.Minute, time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 24 * time.Hour}
}

// DefaultRetryTiers is the default Deliver.RetryTiers.
func DefaultRetryTiers() []time.Duration {
	return []time.Duration{5 * time.Second, time.Minute, 10 * time.Minute, time.Hour, 6 * time.Hour}
}

// SetDefaults fills every unset webhook sink field with its default.
func (d *Deliver) SetDefaults() {
	setString(&d.Group, DefaultDeliverGroup)
	setDuration(&d.ConnectTimeout, DefaultDeliverConnectTimeout)
	setDuration(&d.RequestTimeout, DefaultDeliverRequestTimeout)
	if len(d.RetrySchedule) == 0 {
		d.RetrySchedule = DefaultRetrySchedule()
	}
	if len(d.RetryTiers) == 0 {
		d.RetryTiers = DefaultRetryTiers()
	}
	slices.Sort(d.RetryTiers)
	d.RetryTiers = slices.Compact(d.RetryTiers)
	if d.Jitter == 0 {
		d.Jitter = DefaultDeliverJitter
	}
	setDuration(&d.MaxRetryAfter, DefaultDeliverMaxRetryAfter)
	setDuration(&d.AutoDisableAfter, DefaultDeliverAutoDisable)
	setInt(&d.EndpointConcurrency, DefaultEndpointConcurrency)
	if d.EndpointBurst == 0 {
		d.EndpointBurst = max(1, int(math.Ceil(d.EndpointRate)))
	}
	setInt(&d.EndpointQueue, DefaultEndpointQueue)
	if d.EndpointTenantShare == 0 {
		d.EndpointTenantShare = DefaultEndpointTenantShare
	}
	setDuration(&d.EndpointIdleTimeout, DefaultEndpointIdleTimeout)
	setDuration(&d.SubscriptionSync, DefaultSubscriptionSync)
	setString(&d.SubscriptionLifetime, LifetimeCommitLSN)
	setInt(&d.CircuitFailures, DefaultCircuitFailures)
	setDuration(&d.CircuitCooldown, DefaultCircuitCooldown)
	setInt(&d.MaxPayloadBytes, DefaultMaxPayloadBytes)
	setInt(&d.MaxPending, DefaultDeliverMaxPending)
	setDuration(&d.ReloadInterval, DefaultDeliverReloadInterval)
	setDuration(&d.RotationGrace, DefaultDeliverRotationGrace)
	setDuration(&d.SessionTimeout, DefaultDeliverSessionTimeout)
}

func setDuration(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

func setInt(n *int, def int) {
	if *n == 0 {
		*n = def
	}
}

// Validate checks the webhook sink settings (after SetDefaults) and returns a *ValidationError
// listing every problem, or nil.
func (d *Deliver) Validate() error {
	v := &checker{}
	v.deliver(d)
	return v.err()
}

// ValidateDeliver is Deliver.Validate with the file lines of c's source in the problems.
func (c *Config) ValidateDeliver() error {
	v := &checker{src: c.src}
	v.deliver(&c.Deliver)
	return v.err()
}

func (v *checker) deliver(d *Deliver) {
	if !topicRE.MatchString(d.Group) || d.Group == "" {
		v.add("deliver.group", "%q is not a valid group name; use letters, digits, '.', '_' and '-' (default webhook)", d.Group)
	}
	positive := []struct {
		path string
		val  time.Duration
		def  time.Duration
	}{
		{"deliver.connect_timeout", d.ConnectTimeout, DefaultDeliverConnectTimeout},
		{"deliver.request_timeout", d.RequestTimeout, DefaultDeliverRequestTimeout},
		{"deliver.max_retry_after", d.MaxRetryAfter, DefaultDeliverMaxRetryAfter},
		{"deliver.auto_disable_after", d.AutoDisableAfter, DefaultDeliverAutoDisable},
		{"deliver.circuit_cooldown", d.CircuitCooldown, DefaultCircuitCooldown},
		{"deliver.reload_interval", d.ReloadInterval, DefaultDeliverReloadInterval},
		{"deliver.rotation_grace", d.RotationGrace, DefaultDeliverRotationGrace},
		{"deliver.session_timeout", d.SessionTimeout, DefaultDeliverSessionTimeout},
		{"deliver.endpoint_idle_timeout", d.EndpointIdleTimeout, DefaultEndpointIdleTimeout},
		{"deliver.subscription_sync", d.SubscriptionSync, DefaultSubscriptionSync},
	}
	for _, p := range positive {
		if p.val <= 0 {
			v.add(p.path, "%s; must be positive (default %s)", p.val, p.def)
		}
	}
	if len(d.RetrySchedule) > maxRetryScheduleLen {
		v.add("deliver.retry_schedule", "%d delays; at most %d", len(d.RetrySchedule), maxRetryScheduleLen)
	}
	for i, r := range d.RetrySchedule {
		if r <= 0 {
			v.add(indexPath("deliver.retry_schedule", i), "%s; every delay must be positive (default schedule spans %s)", r, defaultRetryScheduleTotalHint)
		}
	}
	for i, r := range d.RetryTiers {
		if r < minRetryTier {
			v.add(indexPath("deliver.retry_tiers", i), "%s; every tier must be at least %s", r, minRetryTier)
		}
	}
	if d.Jitter < 0 || d.Jitter >= 1 {
		v.add("deliver.jitter", "%g; must be in [0, 1) (default 0.2)", d.Jitter)
	}
	ints := []struct {
		path string
		val  int
		def  int
	}{
		{"deliver.endpoint_concurrency", d.EndpointConcurrency, DefaultEndpointConcurrency},
		{"deliver.endpoint_burst", d.EndpointBurst, 1},
		{"deliver.endpoint_queue", d.EndpointQueue, DefaultEndpointQueue},
		{"deliver.circuit_failures", d.CircuitFailures, DefaultCircuitFailures},
		{"deliver.max_payload_bytes", d.MaxPayloadBytes, DefaultMaxPayloadBytes},
		{"deliver.max_pending", d.MaxPending, DefaultDeliverMaxPending},
	}
	for _, p := range ints {
		if p.val < 1 {
			v.add(p.path, "%d; must be at least 1 (default %d)", p.val, p.def)
		}
	}
	if d.EndpointRate < 0 {
		v.add("deliver.endpoint_rate", "%g; must be 0 (no rate limit, the default) or positive, in requests per second", d.EndpointRate)
	}
	if d.SubscriptionLifetime != LifetimeCommitLSN && d.SubscriptionLifetime != LifetimeRead {
		v.add("deliver.subscription_lifetime", "%q; use commit_lsn (the default: hook tables in the source database's cluster) or read", d.SubscriptionLifetime)
	}
	if d.EndpointTenantShare <= 0 || d.EndpointTenantShare > 1 {
		v.add("deliver.endpoint_tenant_share", "%g; must be in (0, 1] (default %g)", d.EndpointTenantShare, DefaultEndpointTenantShare)
	}
	for i, c := range d.AllowCIDRs {
		if _, _, err := net.ParseCIDR(c); err != nil {
			v.add(indexPath("deliver.allow_cidrs", i), "%q is not a CIDR; write e.g. 10.1.2.0/24 or fd00:1::/64", c)
		}
	}
}

// MaxAttempts is the number of attempts a delivery gets before the dead-letter topic.
func (d *Deliver) MaxAttempts() int { return len(d.RetrySchedule) + 1 }

// WebhookRetryTopic is the delay topic of a retry tier.
func (k Kafka) WebhookRetryTopic(tier time.Duration) string {
	return k.TopicPrefix + webhookTopicInfix + "retry." + TierName(tier)
}

// WebhookDeadLetterTopic holds deliveries whose last attempt failed; `walhook hooks replay`
// sends them again.
func (k Kafka) WebhookDeadLetterTopic() string { return k.TopicPrefix + webhookTopicInfix + "dlq" }

// WebhookAttemptTopic is the attempt log: one record per attempt, keyed by subscription uuid.
func (k Kafka) WebhookAttemptTopic() string { return k.TopicPrefix + webhookTopicInfix + "attempts" }

// WebhookRequestTopic carries re-trigger and replay requests from `walhook hooks` to the sink.
func (k Kafka) WebhookRequestTopic() string { return k.TopicPrefix + webhookTopicInfix + "requests" }

// WebhookGroup is the sink's Kafka consumer group id.
func (c *Config) WebhookGroup() string { return c.Kafka.TopicPrefix + c.Deliver.Group }

// TierName is a tier's duration as it appears in a topic name: "5s", "1m", "6h", "90s".
func TierName(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	default:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	}
}
