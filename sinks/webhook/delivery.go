package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/redact"
	"github.com/walhook/walhook/internal/tracing"
)

// ErrorKind classifies a failed attempt. The HTTP layer classifies; the runner (retry.go)
// decides what happens next.
type ErrorKind int

// The kinds of failed attempts.
const (
	// Retryable: a non-2xx answer other than 410, a timeout, a reset, a TLS error.
	Retryable ErrorKind = iota + 1
	// Permanent: retrying cannot help (refused target, payload too large, bad secret).
	Permanent
	// Gone: the endpoint answered 410; the subscription is disabled.
	Gone
)

func (k ErrorKind) String() string {
	switch k {
	case Retryable:
		return "retryable"
	case Permanent:
		return "permanent"
	case Gone:
		return "gone"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// DeliveryError is a failed attempt.
type DeliveryError struct {
	Kind ErrorKind
	// Status is the HTTP status, 0 when there was no answer.
	Status int
	// RetryAfter is the delay a 429 or 503 asked for; 0 when none.
	RetryAfter time.Duration
	Err        error
}

func (e *DeliveryError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("%s: HTTP %d: %v", e.Kind, e.Status, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Kind, e.Err)
}

func (e *DeliveryError) Unwrap() error { return e.Err }

// ErrPayloadTooLarge: the request body exceeds deliver.max_payload_bytes.
var ErrPayloadTooLarge = errors.New("webhook: payload exceeds deliver.max_payload_bytes")

// Header names walhook sets besides the Standard Webhooks ones.
const (
	HeaderEventType = "walhook-event-type"
	HeaderVersion   = "walhook-version"
	HeaderAttempt   = "walhook-attempt"
	// HeaderPayloadOmitted is "size" on a thin event (ThinBody).
	HeaderPayloadOmitted = "walhook-payload-omitted"
)

// The canonical forms of the header names (http.CanonicalHeaderKey), as they go on the wire.
const (
	canonicalEventType      = "Walhook-Event-Type"
	canonicalVersion        = "Walhook-Version"
	canonicalAttempt        = "Walhook-Attempt"
	canonicalPayloadOmitted = "Walhook-Payload-Omitted"
)

// sender makes one attempt: it builds the body and headers, signs, sends and classifies.
type sender struct {
	http       *http.Client
	guard      *guard
	userAgent  string
	maxPayload int
	timeout    time.Duration
	now        func() time.Time
}

// attempt is what one request did.
type attempt struct {
	status  int
	latency time.Duration
	at      time.Time
	err     *DeliveryError // nil when delivered
	body    []byte         // the first ResponseBodyBytes of the answer
	thin    bool           // a thin event was sent: the body was above deliver.max_payload_bytes
}

// send makes one attempt n of snap to sub, with webhook-id id (MessageID). It never retries.
func (s *sender) send(ctx context.Context, sub *Subscription, snap *avro.Snapshot, id string, n int) attempt {
	now := s.now()
	res := attempt{at: now}
	if sub.Tenant != snap.Tenant {
		// The index is keyed by tenant, so this cannot happen; refuse loudly rather than leak.
		res.err = &DeliveryError{Kind: Permanent, Err: fmt.Errorf("tenant %q snapshot matched to tenant %q subscription", snap.Tenant, sub.Tenant)}
		return res
	}
	u, err := s.guard.checkURL(sub.URL)
	if err != nil {
		res.err = &DeliveryError{Kind: Permanent, Err: err}
		return res
	}
	body := buildBody(sub.Format, snap, now)
	if len(body) > s.maxPayload {
		if sub.Oversize != OversizeThin {
			res.err = &DeliveryError{Kind: Permanent, Err: fmt.Errorf("%w: %d bytes > %d", ErrPayloadTooLarge, len(body), s.maxPayload)}
			return res
		}
		body = ThinBody(snap, len(body), s.maxPayload)
		res.thin = true
	}
	sg, err := sub.signer(now)
	if err != nil {
		res.err = &DeliveryError{Kind: Permanent, Err: err}
		return res
	}
	ctx, cancel := context.WithTimeout(withPlain(ctx, u.Scheme == "http"), s.timeout)
	defer cancel()
	// The URL is already parsed (checkURL): the request takes it as it is rather than parsing
	// its string form again.
	req, err := http.NewRequestWithContext(ctx, sub.Method, "", bytes.NewReader(body))
	if err != nil {
		res.err = &DeliveryError{Kind: Permanent, Err: err}
		return res
	}
	req.URL, req.Host = u, u.Host
	h := make(http.Header, len(sub.Headers)+9)
	req.Header = h
	for k, v := range sub.Headers {
		h.Set(k, v)
	}
	// The names are in canonical form already (http.CanonicalHeaderKey), so they are set
	// without canonicalizing them on every request; they go on the wire as Header.Set would
	// put them.
	h["Content-Type"] = []string{"application/json"}
	h["User-Agent"] = []string{s.userAgent}
	h["Webhook-Id"] = []string{id}
	h["Webhook-Timestamp"] = []string{strconv.FormatInt(now.Unix(), 10)}
	h["Webhook-Signature"] = []string{sg.sign(id, now, body)}
	h[canonicalEventType] = []string{snap.EventType}
	h[canonicalVersion] = []string{strconv.FormatInt(snap.Version, 10)}
	h[canonicalAttempt] = []string{strconv.Itoa(n)}
	if res.thin {
		h[canonicalPayloadOmitted] = []string{"size"}
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		h.Set(tracing.Header, string(tracing.Append(make([]byte, 0, 55), sc)))
	}
	start := time.Now()
	resp, err := s.http.Do(req)
	res.latency = time.Since(start)
	if err != nil {
		res.err = classifyTransport(err)
		return res
	}
	res.body = readResponseBody(resp)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	_ = resp.Body.Close()
	res.status = resp.StatusCode
	res.err = classifyStatus(resp, s.now())
	return res
}

// readResponseBody returns the first ResponseBodyBytes of resp's body, nil when it is empty
// (most receivers answer 2xx without a body: no buffer is allocated for them).
func readResponseBody(resp *http.Response) []byte {
	if resp.ContentLength == 0 {
		return nil
	}
	size := int64(ResponseBodyBytes)
	if resp.ContentLength > 0 {
		size = min(size, resp.ContentLength)
	}
	buf := make([]byte, size)
	n, _ := io.ReadFull(resp.Body, buf)
	if n == 0 {
		return nil
	}
	return buf[:n]
}

// ThinBody is the body of a thin event: what a subscription with oversize "thin" receives
// instead of a body of size bytes above deliver.max_payload_bytes (limit). It names the event,
// the root and the version, and says the payload was left out for its size; the full version
// is on the compliance topics (and the snapshot topic), and the webhook-id is the version's.
//
//	{"event_type":"incident_instance_updated","root_key":"134","version":7,
//	 "payload_omitted":"size","payload_bytes":20971776,"max_payload_bytes":1048576}
func ThinBody(snap *avro.Snapshot, size, limit int) []byte {
	b := make([]byte, 0, 160+len(snap.Key))
	b = append(b, `{"event_type":`...)
	b = strconv.AppendQuote(b, snap.EventType)
	b = append(b, `,"root_key":`...)
	b = appendJSONString(b, snap.Key)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, snap.Version, 10)
	b = append(b, `,"payload_omitted":"size","payload_bytes":`...)
	b = strconv.AppendInt(b, int64(size), 10)
	b = append(b, `,"max_payload_bytes":`...)
	b = strconv.AppendInt(b, int64(limit), 10)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string, as encoding/json writes it: plain ASCII as it is,
// anything that needs escaping (quotes, control characters, <, >, &, non-ASCII) through json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string: cannot fail
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// buildBody is the request body: the snapshot payload as it is (bare), or the legacy envelope.
func buildBody(format string, snap *avro.Snapshot, now time.Time) []byte {
	if format != "envelope" {
		return snap.Payload
	}
	b := make([]byte, 0, len(snap.Payload)+128)
	b = append(b, `{"event_type":`...)
	b = strconv.AppendQuote(b, snap.EventType)
	b = append(b, `,"payload":`...)
	b = append(b, snap.Payload...)
	b = append(b, `,"meta":{"version":1,"sent_at":"`...)
	b = now.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
	return append(b, `"}}`...)
}

func classifyTransport(err error) *DeliveryError {
	// http.Client's errors quote the URL, query included (it masks only a password): the
	// message goes to the attempt log and the logs, so it shows the URL redacted.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = &url.Error{Op: ue.Op, URL: redact.URL(ue.URL), Err: ue.Err}
	}
	if errors.Is(err, ErrRefusedTarget) {
		return &DeliveryError{Kind: Permanent, Err: err}
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return &DeliveryError{Kind: Retryable, Err: fmt.Errorf("timeout: %w", err)}
	case isTLS(err):
		return &DeliveryError{Kind: Retryable, Err: fmt.Errorf("TLS: %w", err)}
	}
	return &DeliveryError{Kind: Retryable, Err: err}
}

func isTLS(err error) bool {
	var re tls.RecordHeaderError
	var ce *tls.CertificateVerificationError
	return errors.As(err, &re) || errors.As(err, &ce) || strings.Contains(err.Error(), "tls:")
}

func classifyStatus(resp *http.Response, now time.Time) *DeliveryError {
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusGone:
		return &DeliveryError{Kind: Gone, Status: code, Err: errors.New("endpoint answered 410 Gone")}
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		ra := parseRetryAfter(resp.Header.Get("Retry-After"), now)
		return &DeliveryError{Kind: Retryable, Status: code, RetryAfter: ra, Err: errors.New(http.StatusText(code))}
	}
	return &DeliveryError{Kind: Retryable, Status: code, Err: fmt.Errorf("endpoint answered %d %s", code, http.StatusText(code))}
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// newHTTPClient builds the guarded transport: connect timeout and SSRF check in the dialer,
// TLS 1.2+, no proxy (a proxy would connect on our behalf and bypass the address check), no
// redirects (a redirect could point anywhere).
func newHTTPClient(g *guard, connectTimeout time.Duration, perHost int, tlsConfig *tls.Config, base *net.Dialer) *http.Client {
	d := net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	if base != nil {
		d = *base
		if d.Timeout == 0 {
			d.Timeout = connectTimeout
		}
	}
	if tlsConfig == nil {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           g.dialContext(d),
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   connectTimeout,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   perHost,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
