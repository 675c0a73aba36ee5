package config

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// The compliance sink defaults, as documented on Compliance's fields.
const (
	DefaultComplianceGroup              = "compliance"
	DefaultComplianceLogName            = "compliance." + EventPrefixPlaceholder
	DefaultComplianceLatestName         = "compliance." + EventPrefixPlaceholder + ".latest"
	DefaultComplianceTransactionTimeout = 60 * time.Second
	// EventPrefixPlaceholder is replaced by a root's event prefix in compliance topic names.
	EventPrefixPlaceholder = "{event_prefix}"
)

// SetDefaults fills every unset compliance field with its default. Topic partitions default to
// k.Partitions, so call it after the Kafka defaults (Config.SetDefaults) are applied.
func (c *Compliance) SetDefaults(k Kafka) {
	setString(&c.Group, DefaultComplianceGroup)
	setString(&c.Log.Name, DefaultComplianceLogName)
	setString(&c.Latest.Name, DefaultComplianceLatestName)
	for _, t := range []*ComplianceTopic{&c.Log, &c.Latest} {
		if t.Partitions == 0 {
			t.Partitions = k.Partitions
		}
	}
	setDuration(&c.TransactionTimeout, DefaultComplianceTransactionTimeout)
	setDuration(&c.SessionTimeout, DefaultGroupSessionTimeout)
	setString(&c.OnPoison, DefaultOnPoison)
}

// ValidateCompliance checks the compliance settings against the model (after defaults) and
// returns a *ValidationError listing every problem, or nil.
func (c *Config) ValidateCompliance() error {
	v := &checker{src: c.src}
	v.compliance(&c.Compliance, &c.Model)
	return v.err()
}

func (v *checker) compliance(c *Compliance, m *Model) {
	if c.Group == "" || !topicRE.MatchString(c.Group) {
		v.add("compliance.group", "%q is not a valid group name; use letters, digits, '.', '_' and '-' (default %s)", c.Group, DefaultComplianceGroup)
	}
	for i, p := range c.Roots {
		if m.rootByPrefix(p) == nil {
			v.add(indexPath("compliance.roots", i), "%q is not the event_prefix of any model root; use one of %v", p, m.eventPrefixes())
		}
	}
	v.complianceTopic("compliance.log", &c.Log, true)
	v.complianceTopic("compliance.latest", &c.Latest, false)
	if c.Log.Name == c.Latest.Name {
		v.add("compliance.latest.name", "%q is the log topic's name too; the two topics need different names", c.Latest.Name)
	}
	for _, t := range []struct {
		path string
		keep []string
	}{{"compliance.log.keep_columns", c.Log.KeepColumns}, {"compliance.latest.keep_columns", c.Latest.KeepColumns}} {
		for i, col := range t.keep {
			for _, r := range c.SelectRoots(m) {
				if col != r.TenantColumn {
					v.add(indexPath(t.path, i), "%q cannot be kept for root %s: the snapshot topic carries only the tenant column (%s) of the hidden columns; remove it",
						col, r.EventPrefix, r.TenantColumn)
				}
			}
		}
	}
	v.onPoison("compliance.on_poison", c.OnPoison)
	if c.TransactionTimeout <= 0 {
		v.add("compliance.transaction_timeout", "%s; must be positive (default %s)", c.TransactionTimeout, DefaultComplianceTransactionTimeout)
	}
}

func (v *checker) complianceTopic(path string, t *ComplianceTopic, log bool) {
	if strings.Count(t.Name, EventPrefixPlaceholder) != 1 || !topicRE.MatchString(strings.ReplaceAll(t.Name, EventPrefixPlaceholder, "x")) {
		v.add(path+".name", "%q must contain %s exactly once and otherwise only letters, digits, '.', '_' and '-'", t.Name, EventPrefixPlaceholder)
	}
	if t.Partitions < 1 && t.Partitions != -1 {
		v.add(path+".partitions", "%d; must be at least 1, or -1 for the broker default (default kafka.partitions)", t.Partitions)
	}
	switch {
	case !log && t.Retention != 0:
		v.add(path+".retention", "%s; the latest topic is compacted and keeps one record per root: remove retention", t.Retention)
	case t.Retention < 0:
		v.add(path+".retention", "%s; must be positive, or 0 for infinite (the default)", t.Retention)
	case t.Retention > 0 && t.Retention < time.Millisecond:
		v.add(path+".retention", "%s; must be at least 1ms", t.Retention)
	}
}

// SelectRoots returns the model roots the compliance sink writes, in model order.
func (c *Compliance) SelectRoots(m *Model) []*Root {
	var out []*Root
	for i := range m.Roots {
		if len(c.Roots) == 0 || slices.Contains(c.Roots, m.Roots[i].EventPrefix) {
			out = append(out, &m.Roots[i])
		}
	}
	return out
}

// Topic is the full name of this compliance topic for root r.
func (t ComplianceTopic) Topic(k Kafka, r Root) string {
	return k.TopicPrefix + strings.ReplaceAll(t.Name, EventPrefixPlaceholder, r.EventPrefix)
}

// RetentionMs is the retention.ms topic config: "-1" (infinite) for a zero Retention.
func (t ComplianceTopic) RetentionMs() string {
	if t.Retention <= 0 {
		return "-1"
	}
	return strconv.FormatInt(t.Retention.Milliseconds(), 10)
}

// ComplianceGroup is the compliance sink's Kafka consumer group id.
func (c *Config) ComplianceGroup() string { return c.Kafka.TopicPrefix + c.Compliance.Group }

func (m *Model) rootByPrefix(p string) *Root {
	for i := range m.Roots {
		if m.Roots[i].EventPrefix == p {
			return &m.Roots[i]
		}
	}
	return nil
}

func (m *Model) eventPrefixes() []string {
	out := make([]string, len(m.Roots))
	for i, r := range m.Roots {
		out[i] = r.EventPrefix
	}
	return out
}
