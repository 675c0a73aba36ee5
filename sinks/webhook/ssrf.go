package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"syscall"

	"github.com/walhook/walhook/internal/redact"
)

// ErrRefusedTarget: a target URL or the address it resolved to is refused by the SSRF policy.
// Deliveries failing with it are not retried.
var ErrRefusedTarget = errors.New("webhook: target refused")

// guard is the SSRF policy. Hostnames are resolved by the dialer; the check runs in the
// dialer's Control function on the address actually connected to, so a name that resolves to a
// public address when the URL is checked and to a private one at connect time (DNS rebinding)
// is refused too.
type guard struct {
	allowLoopback bool
	allow         []netip.Prefix
}

// refusedPrefixes are never targeted unless allow-listed: private (RFC 1918, ULA), CGNAT,
// link-local (which holds 169.254.169.254), the AWS IPv6 metadata address, benchmarking,
// documentation and reserved ranges.
var refusedPrefixes = mustPrefixes(
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
	"192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
	"203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
	"::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "fd00:ec2::254/128", "2001:db8::/32", "64:ff9b::/96",
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func newGuard(allowLoopback bool, cidrs []string) (*guard, error) {
	g := &guard{allowLoopback: allowLoopback}
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("webhook: deliver.allow_cidrs %q: %w", c, err)
		}
		g.allow = append(g.allow, p.Masked())
	}
	return g, nil
}

// checkURL checks what can be known before resolving: scheme and host. Plain http is only
// for loopback targets with allow_loopback on; the dialer then insists on a loopback address.
func (g *guard) checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not a URL (%v); write https://host/path", ErrRefusedTarget, redact.URL(raw), unwrapURLError(err))
	}
	switch {
	case u.User != nil:
		return nil, fmt.Errorf("%w: %s carries a user name or password, which walhook does not send; remove it and pass credentials in a header (Authorization: Basic ...)", ErrRefusedTarget, redactURL(u))
	case u.Hostname() == "":
		return nil, fmt.Errorf("%w: %q has no host; write https://host/path", ErrRefusedTarget, raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !g.allowLoopback {
			return nil, fmt.Errorf("%w: %s is not HTTPS; endpoints must use https:// (plain http only for loopback with deliver.allow_loopback)", ErrRefusedTarget, redactURL(u))
		}
	default:
		return nil, fmt.Errorf("%w: scheme %q of %s; endpoints must use https://", ErrRefusedTarget, u.Scheme, redactURL(u))
	}
	return u, nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// checkIP says why ip may not be connected to, or nil. plain is true for plain-HTTP
// connections, which only loopback targets may use.
func (g *guard) checkIP(ip netip.Addr, plain bool) error {
	ip = ip.Unmap()
	for _, p := range g.allow {
		if p.Contains(ip) {
			return nil
		}
	}
	if ip.IsLoopback() {
		if g.allowLoopback {
			return nil
		}
		return fmt.Errorf("%w: %s is a loopback address (allowed only with deliver.allow_loopback, for development)", ErrRefusedTarget, ip)
	}
	if plain {
		return fmt.Errorf("%w: plain http to %s; only loopback targets may use http", ErrRefusedTarget, ip)
	}
	if ip.IsUnspecified() || ip.IsMulticast() || ip.IsLinkLocalUnicast() || ip.IsPrivate() {
		return fmt.Errorf("%w: %s is a private, link-local, multicast or unspecified address; add it to deliver.allow_cidrs to allow it", ErrRefusedTarget, ip)
	}
	for _, p := range refusedPrefixes {
		if p.Contains(ip) {
			return fmt.Errorf("%w: %s is in the reserved range %s; add it to deliver.allow_cidrs to allow it", ErrRefusedTarget, ip, p)
		}
	}
	return nil
}

// control is a net.Dialer Control function: it runs after resolution, before connect.
func (g *guard) control(plain bool) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return fmt.Errorf("%w: address %q: %v", ErrRefusedTarget, address, err)
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return fmt.Errorf("%w: address %q is not an IP", ErrRefusedTarget, address)
		}
		return g.checkIP(ip, plain)
	}
}

type plainKey struct{}

// withPlain marks a request context as plain HTTP for the guarded dialer.
func withPlain(ctx context.Context, plain bool) context.Context {
	return context.WithValue(ctx, plainKey{}, plain)
}

// dialContext returns a DialContext that applies the guard at connect time. The transport
// passes the request's context, which carries whether the request is plain HTTP.
func (g *guard) dialContext(base net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	tlsDialer, plainDialer := base, base
	tlsDialer.Control = g.control(false)
	plainDialer.Control = g.control(true)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if plain, _ := ctx.Value(plainKey{}).(bool); plain {
			return plainDialer.DialContext(ctx, network, addr)
		}
		return tlsDialer.DialContext(ctx, network, addr)
	}
}

// redactURL masks a URL's password and query values for logs and errors (internal/redact).
func redactURL(u *url.URL) string { return redact.URL(u.String()) }
