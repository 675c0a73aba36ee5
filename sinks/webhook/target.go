package webhook

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/walhook/walhook/config"
)

// TargetPolicy checks an endpoint URL against the SSRF policy the sink applies at delivery
// (deliver.allow_loopback, deliver.allow_cidrs), so that a subscription the sink would refuse
// is refused when it is created or changed rather than dead-lettered later. The sink still
// checks every connection: DNS may answer differently at delivery time.
type TargetPolicy struct {
	g        *guard
	resolver *net.Resolver
	// timeout bounds the name lookup.
	timeout time.Duration
	// formOnly skips the address checks: the Admin's policy when it was opened without a
	// config (tests and tools that subscribe loopback receivers).
	formOnly bool
}

// NewTargetPolicy is the policy of a deliver config section.
func NewTargetPolicy(d config.Deliver) (*TargetPolicy, error) {
	g, err := newGuard(d.AllowLoopback, d.AllowCIDRs)
	if err != nil {
		return nil, err
	}
	return &TargetPolicy{g: g, resolver: net.DefaultResolver, timeout: 3 * time.Second}, nil
}

// formOnlyPolicy checks scheme, host and user info only.
func formOnlyPolicy() *TargetPolicy {
	return &TargetPolicy{g: &guard{allowLoopback: true}, formOnly: true}
}

// Check returns an error wrapping ErrRefusedTarget when delivery to raw would be refused: a
// URL that is not https:// (http only to loopback with allow_loopback), has no host or carries
// user info, or whose host is, or only resolves to, a loopback, private, link-local or reserved
// address that the policy does not allow. Warnings are what may still fail: a name that does
// not resolve from here, or that resolves to some refused addresses besides allowed ones.
func (p *TargetPolicy) Check(ctx context.Context, raw string) (warnings []string, err error) {
	u, err := p.g.checkURL(raw)
	if err != nil {
		return nil, err
	}
	if p.formOnly {
		return nil, nil
	}
	plain := u.Scheme == "http"
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		return nil, p.g.checkIP(ip, plain)
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	addrs, err := p.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return []string{fmt.Sprintf("%s does not resolve from here (%v); deliveries will fail until it does", host, lookupReason(err))}, nil
	}
	var refused []error
	for _, a := range addrs {
		if err := p.g.checkIP(a, plain); err != nil {
			refused = append(refused, err)
		}
	}
	switch {
	case len(refused) == len(addrs):
		return nil, fmt.Errorf("%w: %s resolves to %v: %v", ErrRefusedTarget, host, addrs, refused[0])
	case len(refused) > 0:
		warnings = append(warnings, fmt.Sprintf("%s resolves to %v; deliveries to some of these addresses will be refused: %v", host, addrs, refused[0]))
	}
	return warnings, nil
}

func lookupReason(err error) string {
	if err == nil {
		return "no addresses"
	}
	if de, ok := err.(*net.DNSError); ok {
		if de.IsNotFound {
			return "no such host"
		}
		if de.IsTimeout {
			return "the lookup timed out"
		}
		return de.Err
	}
	return err.Error()
}
