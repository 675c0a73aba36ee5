// Package redact masks credentials in values that people see: log lines, CLI output, error
// messages and `walhook status`. Webhook endpoint URLs are the main case: a receiver's URL may
// carry a password (user info) or a token in its query.
package redact

import (
	"net/url"
	"strings"
)

// Mark replaces a secret.
const Mark = "xxxxx"

// URL returns raw with the password of its user info and the value of every query parameter
// replaced by Mark (a query commonly carries an access token, and walhook cannot tell which
// parameter is one). Scheme, host, port, path and parameter names stay: they are what a person
// needs to recognise the endpoint. A string that does not parse as a URL is masked from its
// "://" on, since it may still hold a password.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.Index(raw, "://"); i >= 0 {
			return raw[:i+3] + Mark
		}
		return Mark
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), Mark)
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{Mark}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}
