package webhook

import (
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

func TestGuardRefusesPrivateAddresses(t *testing.T) {
	g, err := newGuard(false, []string{"10.1.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	for _, ip := range []string{"127.0.0.1", "::1", "10.0.0.1", "172.16.3.4", "192.168.1.1", "169.254.169.254",
		"fd00:ec2::254", "fc00::1", "fe80::1", "100.64.0.1", "0.0.0.0", "::", "224.0.0.1", "ff02::1", "::ffff:10.0.0.1"} {
		if err := g.checkIP(netip.MustParseAddr(ip), false); !errors.Is(err, ErrRefusedTarget) {
			t.Errorf("%s: %v, want refused", ip, err)
		}
	}
	for _, ip := range []string{"8.8.8.8", "2606:4700::1111", "10.1.2.3"} {
		if err := g.checkIP(netip.MustParseAddr(ip), false); err != nil {
			t.Errorf("%s: %v, want allowed", ip, err)
		}
	}
	if err := g.checkIP(netip.MustParseAddr("8.8.8.8"), true); err == nil {
		t.Error("plain http to a public address allowed")
	}
	if _, err := g.checkURL("http://example.com/x"); err == nil {
		t.Error("http URL allowed without allow_loopback")
	}
	dev, _ := newGuard(true, nil)
	if err := dev.checkIP(netip.MustParseAddr("127.0.0.1"), true); err != nil {
		t.Errorf("loopback over http with allow_loopback: %v", err)
	}
}

func TestMessageIDIsStableAndDistinct(t *testing.T) {
	a := MessageID("u1", "incident.instance", "134", 2)
	if a != MessageID("u1", "incident.instance", "134", 2) || len(a) != 30 {
		t.Fatalf("unstable or wrong length: %s", a)
	}
	for _, b := range []string{MessageID("u2", "incident.instance", "134", 2), MessageID("u1", "incident.instance", "134", 3),
		MessageID("u1", "incident.instance", "1342", 2), MessageID("u1", "incident.instance|134", "", 2)} {
		if a == b {
			t.Fatalf("collision %s", a)
		}
	}
}

// TestHeaderNamesAreCanonical: send sets these names without canonicalizing them.
func TestHeaderNamesAreCanonical(t *testing.T) {
	for name, canonical := range map[string]string{HeaderEventType: canonicalEventType, HeaderVersion: canonicalVersion,
		HeaderAttempt: canonicalAttempt, HeaderPayloadOmitted: canonicalPayloadOmitted} {
		if got := http.CanonicalHeaderKey(name); got != canonical {
			t.Errorf("canonical form of %s is %s, not %s", name, got, canonical)
		}
	}
}

// TestMessageIDNeverChanges: receivers deduplicate by webhook-id, so a version's id must be the
// same in every walhook release (values computed by the first implementation).
func TestMessageIDNeverChanges(t *testing.T) {
	for _, c := range []struct {
		sub, root, key string
		version        int64
		want           string
	}{
		{"3f0c1a4e-8b2d-4c6f-9a1e-2b7d5c8e9f01", "incident.instance", "134", 7, "msg_4lhmua4o7w5w2bp5h64clgbuiu"},
		{"", "", "", 0, "msg_jiwsw656pdki5fy6iqxnipoon4"},
	} {
		if got := MessageID(c.sub, c.root, c.key, c.version); got != c.want {
			t.Errorf("MessageID(%q, %q, %q, %d) = %s; it was %s", c.sub, c.root, c.key, c.version, got, c.want)
		}
	}
}

// TestTransportErrorsRedactTheURL: http.Client quotes the request URL in its errors, which end
// up in the attempt log and the logs; a token in the query must not.
func TestTransportErrorsRedactTheURL(t *testing.T) {
	err := classifyTransport(&url.Error{Op: "Post", URL: "https://u:pw@hooks.example.com/x?token=s3cret", Err: errors.New("connection refused")})
	if err.Kind != Retryable || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), ":pw@") ||
		!strings.Contains(err.Error(), "hooks.example.com/x?token=xxxxx") {
		t.Errorf("classified %v as %v; want retryable with the URL redacted", err.Err, err.Kind)
	}
}
