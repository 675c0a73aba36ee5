package config

import (
	"net/url"
	"regexp"
	"slices"
)

// redactedMark replaces a secret in Redacted output.
const redactedMark = "xxxxx"

// Redacted returns a deep copy fit for logs and `walhook config show`: passwords, and the
// password inside any URL, are replaced by "xxxxx". Usernames and hosts stay, since they are
// what an operator checks.
func (c *Config) Redacted() *Config {
	r := c.clone()
	r.Postgres.URL = redactConnString(r.Postgres.URL)
	r.SchemaRegistry.URL = redactURL(r.SchemaRegistry.URL)
	redactSecret(&r.Kafka.SASL.Password)
	redactSecret(&r.SchemaRegistry.Password)
	return r
}

func redactSecret(s *string) {
	if *s != "" {
		*s = redactedMark
	}
}

// dsnPasswordRE matches password=... in a libpq key/value connection string, quoted or not.
var dsnPasswordRE = regexp.MustCompile(`(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// redactConnString handles both libpq forms: a URL and "host=... password=...".
func redactConnString(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		return redactURL(s)
	}
	return dsnPasswordRE.ReplaceAllString(s, "${1}"+redactedMark)
}

// redactURL masks the userinfo password and a password query parameter (libpq accepts one).
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), redactedMark)
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", redactedMark)
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// clone deep-copies c so a copy can be changed (redacted, decoded over, defaulted) without
// touching the original's slices. A nil c clones to an empty Config.
func (c *Config) clone() *Config {
	if c == nil {
		return &Config{}
	}
	out := *c
	out.Kafka.Brokers = cloneStrings(c.Kafka.Brokers)
	out.Model.Roots = cloneRoots(c.Model.Roots)
	return &out
}

func cloneRoots(in []Root) []Root {
	if in == nil {
		return nil
	}
	out := make([]Root, len(in))
	for i, r := range in {
		r.Exclude = cloneStrings(r.Exclude)
		r.Subordinates = cloneSubordinates(r.Subordinates)
		r.References = make([]Reference, len(in[i].References))
		for j, ref := range in[i].References {
			ref.Columns = cloneStrings(ref.Columns)
			r.References[j] = ref
		}
		if in[i].References == nil {
			r.References = nil
		}
		out[i] = r
	}
	return out
}

func cloneSubordinates(in []Subordinate) []Subordinate {
	if in == nil {
		return nil
	}
	out := make([]Subordinate, len(in))
	for i, s := range in {
		s.Exclude = cloneStrings(s.Exclude)
		s.Subordinates = cloneSubordinates(s.Subordinates)
		out[i] = s
	}
	return out
}

// cloneStrings copies s, keeping nil as nil so a clone compares equal to its original.
func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return slices.Clone(s)
}
