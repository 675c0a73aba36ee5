package webhook_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.uber.org/zap"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/sinks/webhook"
)

var flagHTTPSDeliveries = flag.Int("https.deliveries", 100_000,
	"BenchmarkDeliverHTTPS: deliveries per phase, spread over ten endpoints (e.g. 20000 for a quick run)")

const (
	httpsEndpoints   = 10
	httpsConcurrency = config.DefaultEndpointConcurrency
	httpsSlowAnswer  = 2 * time.Second
	httpsStall       = time.Minute
)

// BenchmarkDeliverHTTPS measures the sink over HTTPS, in one run (use -benchtime=1x; b.N is
// ignored), against ten HTTPS receivers (a certificate of a test CA that only the sink and the
// bare client trust, HTTP/1.1 keep-alive) that verify every Standard Webhooks signature and
// record every root key they get:
//
//   - bare: a bare http.Client (ten endpoints × 16 goroutines, the sink's per-endpoint
//     concurrency), signing each request as the sink does;
//   - sink: the sink delivering the same number of snapshots from Kafka, all endpoints healthy;
//   - 1 never answers: deliveries/s of the nine healthy endpoints while the tenth holds every
//     request until the sink's request timeout;
//   - 1 answers in 2 s: the same with the tenth answering every request after 2 s.
//
// Every phase checks that each healthy endpoint got each of its snapshots exactly once with a
// valid signature; it prints the rates and the ratios sink/bare (target ≥ 0.8) and
// healthy-with-one-bad/all-healthy (target ≥ 0.9), with the load average. It asserts no timing.
func BenchmarkDeliverHTTPS(b *testing.B) {
	n := *flagHTTPSDeliveries - *flagHTTPSDeliveries%httpsEndpoints
	if n <= 0 {
		b.Fatalf("-https.deliveries %d: need at least %d", *flagHTTPSDeliveries, httpsEndpoints)
	}
	ca := newTestCA(b)
	s := startServers(b)

	bare := httpsBare(b, ca, n)
	healthy := httpsSink(b, s, ca, n, badNone)
	dead := httpsSink(b, s, ca, n, badNever)
	slow := httpsSink(b, s, ca, n, badSlow)

	b.ReportMetric(bare.rate, "bare_deliveries/s")
	b.ReportMetric(healthy.rate, "sink_deliveries/s")
	b.ReportMetric(healthy.rate/bare.rate, "sink/bare")
	b.ReportMetric(healthy.perCPUSecond/bare.perCPUSecond, "sink/bare_per_cpu")
	b.ReportMetric(dead.rate/healthy.rate, "1never/healthy")
	b.ReportMetric(slow.rate/healthy.rate, "1slow/healthy")
	fmt.Printf("DeliverHTTPS: %d deliveries per phase over %d HTTPS endpoints (test CA, keep-alive, signatures verified), %d in flight per endpoint\n",
		n, httpsEndpoints, httpsConcurrency)
	for _, p := range []struct {
		name string
		r    httpsPhase
		note string
	}{
		{"bare Go client", bare, ""},
		{"sink, all healthy", healthy, fmt.Sprintf("sink/bare %.2f (target ≥ 0.8); per CPU-second %.2f", healthy.rate/bare.rate, healthy.perCPUSecond/bare.perCPUSecond)},
		{"sink, 1 of 10 never answers", dead, fmt.Sprintf("healthy endpoints keep %.2f (target ≥ 0.9); per CPU-second %.2f", dead.rate/healthy.rate, dead.perCPUSecond/healthy.perCPUSecond)},
		{"sink, 1 of 10 answers in 2 s", slow, fmt.Sprintf("healthy endpoints keep %.2f (target ≥ 0.9); per CPU-second %.2f", slow.rate/healthy.rate, slow.perCPUSecond/healthy.perCPUSecond)},
	} {
		fmt.Printf("  %-30s %8.0f deliveries/s  %6d in %6.2fs  %5.2f cores  %7.0f per CPU-second  loadavg %s  %s\n",
			p.name, p.r.rate, p.r.delivered, p.r.elapsed.Seconds(), p.r.cores, p.r.perCPUSecond, p.r.load, p.note)
	}
}

// badEndpoint is what the first endpoint does in a phase.
type badEndpoint int

const (
	badNone  badEndpoint = iota // answers like the others
	badNever                    // holds every request until the client gives up
	badSlow                     // answers every request after httpsSlowAnswer
)

// httpsPhase is one phase's figures over its healthy endpoints.
type httpsPhase struct {
	rate      float64
	delivered int
	elapsed   time.Duration
	cores     float64
	// perCPUSecond is deliveries per second of this process's CPU: what the phase costs,
	// steadier than the rate when other work takes the machine's cores.
	perCPUSecond float64
	load         string
}

func httpsBare(b *testing.B, ca *testCA, n int) httpsPhase {
	rcvs := startHTTPSReceivers(b, ca, n, badNone)
	whs := make([]*standardwebhooks.Webhook, len(rcvs))
	for i, r := range rcvs {
		secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("bare-secret-%02d-0123456789abcdef", i)))
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			b.Fatal(err)
		}
		whs[i] = wh
		r.trust(secret)
	}
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.clientConfig(),
		MaxIdleConns: 1024, MaxIdleConnsPerHost: httpsConcurrency, IdleConnTimeout: 90 * time.Second}}
	defer cl.CloseIdleConnections()
	var next [httpsEndpoints]atomic.Int64 // per endpoint: its keys are j*httpsEndpoints + endpoint
	var wg sync.WaitGroup
	var failed atomic.Value
	cpu0, start := processCPU(), time.Now()
	for g := range httpsEndpoints * httpsConcurrency {
		ep := g % httpsEndpoints
		wg.Go(func() {
			for {
				// Key k goes to endpoint k % httpsEndpoints, as the sink's tenants do.
				k := int(next[ep].Add(1)-1)*httpsEndpoints + ep
				if k >= n {
					return
				}
				if err := bareSend(cl, rcvs[ep].url, whs[ep], k); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatalf("bare client: %v", err)
	}
	return finishPhase(b, "bare", rcvs, 0, n, start, start, cpu0)
}

// signedRequest is a bare client's POST of body to url, signed with Standard Webhooks as the
// sink signs it.
func signedRequest(wh *standardwebhooks.Webhook, url, id string, body []byte) (*http.Request, error) {
	now := time.Now()
	sig, err := wh.Sign(id, now, body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	return req, nil
}

func bareSend(cl *http.Client, url string, wh *standardwebhooks.Webhook, key int) error {
	payload := snap(strconv.Itoa(key), "t", 1).Payload
	id := fmt.Sprintf("msg_bare_%d", key)
	req, err := signedRequest(wh, url, id, payload)
	if err != nil {
		return err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("receiver answered %s", resp.Status)
	}
	return nil
}

func httpsSink(b *testing.B, s *servers, ca *testCA, n int, bad badEndpoint) httpsPhase {
	h := newHarness(b, s, benchSinkConfig, func(c *config.Config) {
		// The whole burst fits in the endpoints' queues and under the partitions' pending
		// limit, so the figure is the delivery path's. At the defaults (endpoint_queue 1,000,
		// max_pending 10,000) a burst of more than ~1,000 per endpoint overflows the queues,
		// and each overflow is a retryable failure deferred through a retry topic with an
		// attempt used (dead-lettered after this harness's three short retries).
		c.Deliver.EndpointQueue = n/httpsEndpoints + 1
		c.Deliver.MaxPending = n + 1
	})
	rcvs := startHTTPSReceivers(b, ca, n, bad)
	for i, r := range rcvs {
		sub := h.sub(fmt.Sprintf("t%d", i), "incident.instance.updated", r.url)
		r.trust(sub.Secret)
	}
	snaps := make([]avro.Snapshot, 0, n)
	for k := range n {
		snaps = append(snaps, snap(strconv.Itoa(k), fmt.Sprintf("t%d", k%httpsEndpoints), 1))
	}
	h.produce(snaps...)
	firstHealthy := 0
	if bad != badNone {
		firstHealthy = 1
	}
	stop := h.run(webhook.WithLogger(zap.NewNop()), webhook.WithTLSConfig(ca.clientConfig()))
	defer stop()
	// Wait for the last of the healthy endpoints' deliveries; a sink that delivers nothing for
	// httpsStall fails the run.
	want := n / httpsEndpoints * (httpsEndpoints - firstHealthy)
	last, lastAt := 0, time.Now()
	var cpu0 time.Duration
	var cpuAt time.Time // CPU is counted from the first delivery on, as the rate is
	for got := 0; got < want; {
		got = 0
		for _, r := range rcvs[firstHealthy:] {
			got += r.distinct()
		}
		if got > 0 && cpuAt.IsZero() {
			cpu0, cpuAt = processCPU(), time.Now()
		}
		if got != last {
			last, lastAt = got, time.Now()
		}
		if time.Since(lastAt) > httpsStall {
			for i, r := range rcvs {
				d, dups, refused, err := r.counts()
				b.Logf("endpoint %d: %d distinct, %d duplicates, %d refused (last: %v)", i, d, dups, refused, err)
			}
			b.Fatalf("healthy endpoints got %d of %d deliveries, none for %v", got, want, httpsStall)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Time from the first request, so the consumer group join is not counted.
	start := time.Now()
	for _, r := range rcvs {
		if f := r.firstAt(); !f.IsZero() && f.Before(start) {
			start = f
		}
	}
	return finishPhase(b, "sink", rcvs, firstHealthy, n, start, cpuAt, cpu0)
}

// finishPhase checks the healthy receivers (rcvs[firstHealthy:]) got each of their keys once,
// every signature valid, and returns their rate since start.
// CPU is this process's (client or sink, receivers, kfake) since cpuAt, when it read cpu0.
func finishPhase(b *testing.B, phase string, rcvs []*httpsReceiver, firstHealthy, n int, start, cpuAt time.Time, cpu0 time.Duration) httpsPhase {
	end := time.Now()
	cpu := processCPU() - cpu0
	load, _ := os.ReadFile("/proc/loadavg")
	delivered := 0
	for i, r := range rcvs {
		got, dups, bad, lastErr := r.counts()
		if bad > 0 {
			b.Errorf("%s: endpoint %d refused %d deliveries, last: %v", phase, i, bad, lastErr)
		}
		if i < firstHealthy {
			continue
		}
		if want := n / httpsEndpoints; got != want || dups > 0 {
			b.Errorf("%s: endpoint %d got %d distinct deliveries of %d, %d duplicates", phase, i, got, want, dups)
		}
		delivered += got
	}
	last := start
	for _, r := range rcvs[firstHealthy:] {
		if l := r.lastAt(); l.After(last) {
			last = l
		}
	}
	elapsed := last.Sub(start)
	return httpsPhase{rate: float64(delivered) / elapsed.Seconds(), delivered: delivered, elapsed: elapsed,
		cores: cpu.Seconds() / end.Sub(cpuAt).Seconds(), perCPUSecond: float64(delivered) / cpu.Seconds(), load: strings.Join(strings.Fields(string(load))[:3], " ")}
}

// httpsReceiver is one HTTPS endpoint: it verifies each request's signature and records which
// root key (the payload's id; key k belongs to endpoint k % httpsEndpoints) it got, and how often.
type httpsReceiver struct {
	srv   *httptest.Server
	url   string
	index int // keys k with k % httpsEndpoints == index are this endpoint's
	bad   badEndpoint

	mu                       sync.Mutex // guards the fields below
	wh                       *standardwebhooks.Webhook
	seen                     []uint8 // deliveries of key index+j*httpsEndpoints at j (saturates: any count > 1 is a duplicate)
	distinctN, dups, refused int
	lastErr                  error
	first                    time.Time
	last                     time.Time
}

func startHTTPSReceivers(b *testing.B, ca *testCA, n int, bad badEndpoint) []*httpsReceiver {
	rcvs := make([]*httpsReceiver, httpsEndpoints)
	for i := range rcvs {
		r := &httpsReceiver{index: i, seen: make([]uint8, n/httpsEndpoints)}
		if i == 0 {
			r.bad = bad
		}
		r.srv = httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
		r.srv.TLS = ca.serverConfig()
		r.srv.StartTLS()
		r.url = r.srv.URL + "/hook"
		b.Cleanup(func() {
			r.srv.CloseClientConnections()
			r.srv.Close()
		})
		rcvs[i] = r
	}
	return rcvs
}

func (r *httpsReceiver) trust(secret string) {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		panic(err) // the secrets come from the sink's admin or from httpsBare: always valid
	}
	r.mu.Lock()
	r.wh = wh
	r.mu.Unlock()
}

func (r *httpsReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err == nil {
		err = r.record(time.Now(), req.Header, body)
	}
	switch r.bad {
	case badNever:
		<-req.Context().Done()
		return
	case badSlow:
		select {
		case <-time.After(httpsSlowAnswer):
		case <-req.Context().Done():
			return
		}
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

var errNoKey = errors.New(`payload has no {"id": <n>`)

func (r *httpsReceiver) record(now time.Time, h http.Header, body []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.wh.Verify(body, h)
	var key int
	if err == nil {
		key, err = payloadKey(body)
	}
	if err == nil && (key < 0 || key%httpsEndpoints != r.index || key/httpsEndpoints >= len(r.seen)) {
		err = fmt.Errorf("key %d is not one of endpoint %d's", key, r.index)
	}
	if err != nil {
		r.refused++
		r.lastErr = err
		return err
	}
	if r.first.IsZero() {
		r.first = now
	}
	r.last = now
	j := key / httpsEndpoints
	if r.seen[j] == 0 {
		r.distinctN++
	} else {
		r.dups++
	}
	r.seen[j] = min(r.seen[j], 254) + 1
	return nil
}

// payloadKey is the id of a snap payload, {"id": <n>, ...}.
func payloadKey(body []byte) (int, error) {
	rest, ok := bytes.CutPrefix(body, []byte(`{"id": `))
	i := bytes.IndexByte(rest, ',')
	if !ok || i < 0 {
		return 0, errNoKey
	}
	return strconv.Atoi(string(rest[:i]))
}

func (r *httpsReceiver) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.distinctN
}

func (r *httpsReceiver) counts() (distinct, dups, refused int, lastErr error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.distinctN, r.dups, r.refused, r.lastErr
}

func (r *httpsReceiver) firstAt() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.first
}

func (r *httpsReceiver) lastAt() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// testCA is a throw-away certificate authority and a certificate it issued for 127.0.0.1.
type testCA struct {
	pool *x509.CertPool
	leaf tls.Certificate
}

func newTestCA(b *testing.B) *testCA {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "walhook bench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		b.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		b.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &testCA{pool: pool, leaf: tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}}
}

// clientConfig trusts only the test CA.
func (ca *testCA) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12}
}

// serverConfig serves the CA's certificate over HTTP/1.1 (httptest offers no h2 unless asked).
func (ca *testCA) serverConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{ca.leaf}, MinVersion: tls.VersionTLS12}
}

// processCPU is the user+system CPU this process has used (sink, receivers, kfake).
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru) // cannot fail with RUSAGE_SELF
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
