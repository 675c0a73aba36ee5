package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/chunked"
	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/kafkaconn"
	"github.com/walhook/walhook/internal/kafkatest"
	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/sinks/webhook"
	"github.com/walhook/walhook/sinks/webhook/webhooktest"
)

// largeStack is PostgreSQL with the demo schema, Kafka and every stage (cdc, bubbleup, deliver,
// comply) as `walhook dev` runs them, with two subscriptions to the demo's incident events of
// tenant acme: full (oversize dead_letter) and thin (oversize thin).
type largeStack struct {
	t     *testing.T
	cfg   *config.Config
	pgURL string
	db    *pgx.Conn
	full  *webhooktest.Receiver
	thin  *webhooktest.Receiver
	reg   avro.Registry
	cl    *kgo.Client
	errc  chan error
	procs map[string]*exec.Cmd // with startLargeStack's procs: the stage processes
	// cfgPath is their config file; killed and exited belong to startProc.
	cfgPath string
	killed  map[*exec.Cmd]*atomic.Bool
	exited  map[*exec.Cmd]chan struct{}
}

// startLargeStack starts the stack with deliver.max_payload_bytes maxPayload: the full
// subscription (oversize dead_letter) receives payloads up to it, the thin one (oversize thin)
// thin events above it. With procs, each stage runs as its own `walhook <stage>` process
// (stageProcs has their pids, to read their memory); else all in this process, as `walhook dev`
// runs them.
func startLargeStack(t *testing.T, maxPayload int, procs ...bool) *largeStack {
	t.Helper()
	pgURL := pgtest.NewDatabase(t, pgtest.Start(t))
	execSQL(t, pgURL, demo.SchemaSQL)
	env := kafkatest.Start(t)
	yml := fmt.Sprintf(`postgres: {url: %q}
kafka: {brokers: [%s], topic_prefix: %q, partitions: 2}
cdc: {manage_replica_identity: true, status_interval: 100ms, heartbeat_interval: 200ms, spill_dir: %q}
bubbleup: {state_dir: %q}
deliver: {allow_loopback: true, max_payload_bytes: %d}
http: {listen: ""}
log: {level: warn}
`, pgURL, strings.Join(env.Brokers, ","), kafkatest.TopicName(t, "large")+".", t.TempDir(), t.TempDir(), maxPayload)
	if env.RegistryURL != "" {
		yml += fmt.Sprintf("schema_registry: {url: %q}\n", env.RegistryURL)
	}
	yml += demo.ModelYAML
	cfg, err := config.Parse([]byte(yml), "large_test")
	if err != nil {
		t.Fatal(err)
	}
	s := &largeStack{t: t, cfg: cfg, pgURL: pgURL, full: webhooktest.Start(t), thin: webhooktest.Start(t), errc: make(chan error, 8),
		killed: map[*exec.Cmd]*atomic.Bool{}, exited: map[*exec.Cmd]chan struct{}{}}
	ctx := context.Background()
	if s.db, err = pgx.Connect(ctx, pgURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.db.Close(context.Background()) })

	a, err := webhook.OpenAdmin(ctx, pgURL, webhook.WithConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	app, err := a.RegisterApp(ctx, "large")
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []string{"incident.instance.created", "incident.instance.updated"} {
		for _, sub := range []struct {
			url, oversize string
		}{{s.full.URL(), webhook.OversizeDeadLetter}, {s.thin.URL(), webhook.OversizeThin}} {
			if _, err := a.Subscribe(ctx, webhook.SubscribeRequest{AppID: app.ID, Tenant: "acme", Event: ev, URL: sub.url, Oversize: sub.oversize}); err != nil {
				t.Fatal(err)
			}
		}
	}
	a.Close()

	opts, err := kafkaconn.Opts(cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	if s.cl, err = kgo.NewClient(opts...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.cl.Close)
	if s.reg, err = kafkaconn.AvroRegistry(cfg, s.cl); err != nil {
		t.Fatal(err)
	}

	if len(procs) > 0 && procs[0] {
		s.startProcs(yml)
	} else {
		s.startInProcess(ctx)
	}
	s.eventually(90*time.Second, "the slot streams", func() error {
		var active bool
		err := s.db.QueryRow(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, cfg.Postgres.Slot).Scan(&active)
		if err == nil && !active {
			err = fmt.Errorf("slot %s not active yet", cfg.Postgres.Slot)
		}
		return err
	})
	s.exec(`insert into session.instance (id, status, tenant_id) values (1, 'IN_PROGRESS', 'acme')`)
	return s
}

func (s *largeStack) startInProcess(ctx context.Context) {
	p, err := newProcess(s.cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	services, err := devStages(ctx, p)
	if err != nil {
		s.t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := runServices(runCtx, p.log, services...); err != nil && runCtx.Err() == nil {
			s.errc <- err
		}
	}()
	s.t.Cleanup(func() { cancel(); <-done })
}

// startProcs runs `walhook cdc`, `bubbleup`, `deliver` and `comply` as processes on yml.
func (s *largeStack) startProcs(yml string) {
	s.cfgPath = filepath.Join(s.t.TempDir(), "walhook.yaml")
	if err := os.WriteFile(s.cfgPath, []byte(yml), 0o600); err != nil {
		s.t.Fatal(err)
	}
	s.procs = map[string]*exec.Cmd{}
	for _, stage := range []string{"cdc", "bubbleup", "deliver", "comply"} {
		s.startProc(stage)
	}
}

// startProc starts `walhook <stage>`; a stage that exits by itself fails the test at the next
// eventually, one killed by killProc does not.
func (s *largeStack) startProc(stage string) {
	cmd := exec.Command(walhookBinary(s.t), stage, "--config", s.cfgPath)
	// Static members: a restarted stage takes its partitions over at once instead of after the
	// killed one's session timeout.
	cmd.Env = append(os.Environ(), "WALHOOK_INSTANCE_ID="+stage+"-0")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.procs[stage] = cmd
	exited := make(chan struct{})
	s.exited[cmd] = exited
	go func() {
		err := cmd.Wait()
		close(exited)
		if s.killed[cmd].Load() {
			return
		}
		select {
		case s.errc <- fmt.Errorf("walhook %s exited: %v\n%s", stage, err, out):
		default:
		}
	}()
	s.killed[cmd] = &atomic.Bool{}
	s.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
}

// killProc SIGKILLs the stage's process and waits until it is gone.
func (s *largeStack) killProc(stage string) {
	cmd := s.procs[stage]
	s.killed[cmd].Store(true)
	_ = cmd.Process.Kill()
	<-s.exited[cmd]
}

// peakRSS is the peak resident set (VmHWM) of each stage process, in MiB.
func (s *largeStack) peakRSS() map[string]int {
	out := map[string]int{}
	for stage, cmd := range s.procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
		if err != nil {
			s.t.Fatalf("walhook %s: %v", stage, err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
				kb, _ := strconv.Atoi(f[1])
				out[stage] = kb >> 10
			}
		}
	}
	return out
}

// eventually polls fn until it succeeds, failing the test at the deadline or as soon as a stage
// stops by itself.
func (s *largeStack) eventually(timeout time.Duration, what string, fn func() error) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 20 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return
		}
		select {
		case serr := <-s.errc:
			s.t.Fatalf("%s: a stage stopped: %v", what, serr)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 250*time.Millisecond)
	}
}

func (s *largeStack) exec(sql string, args ...any) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := s.db.Exec(ctx, sql, args...); err != nil {
		s.t.Fatalf("%.120s: %v", sql, err)
	}
}

// walLSN is the server's current WAL insert position.
func (s *largeStack) walLSN() string {
	var lsn string
	if err := s.db.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&lsn); err != nil {
		s.t.Fatal(err)
	}
	return lsn
}

// waitConfirmed waits until the slot's confirmed_flush_lsn reaches lsn.
func (s *largeStack) waitConfirmed(lsn string, timeout time.Duration) {
	s.t.Helper()
	s.eventually(timeout, "confirmed_flush_lsn reaches "+lsn, func() error {
		var ok bool
		var got string
		err := s.db.QueryRow(context.Background(), `SELECT confirmed_flush_lsn >= $2::pg_lsn, confirmed_flush_lsn::text
			FROM pg_replication_slots WHERE slot_name = $1`, s.cfg.Postgres.Slot, lsn).Scan(&ok, &got)
		if err == nil && !ok {
			err = fmt.Errorf("confirmed_flush_lsn %s", got)
		}
		return err
	})
}

// delivery waits for the receiver's request of event type and version of the root keyed key.
func (s *largeStack) delivery(r *webhooktest.Receiver, eventType, key string, version int, timeout time.Duration) webhooktest.Request {
	s.t.Helper()
	var found webhooktest.Request
	s.eventually(timeout, fmt.Sprintf("%s %s version %d at %s", eventType, key, version, r.URL()), func() error {
		for _, req := range r.Requests() {
			if req.Header.Get(webhook.HeaderEventType) == eventType && req.Header.Get(webhook.HeaderVersion) == strconv.Itoa(version) &&
				rootKeyOf(req.Body) == key {
				found = req
				return nil
			}
		}
		return fmt.Errorf("%d requests, none of it", r.Count())
	})
	return found
}

// rootKeyOf is the "id" of a bare payload or the "root_key" of a thin event, without decoding
// a large body.
func rootKeyOf(body []byte) string {
	if bytes.Contains(body[:min(len(body), 512)], []byte(`"payload_omitted"`)) {
		var thin struct {
			RootKey string `json:"root_key"`
		}
		_ = json.Unmarshal(body, &thin)
		return thin.RootKey
	}
	var head struct {
		ID json.Number `json:"id"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	_ = dec.Decode(&head)
	return head.ID.String()
}

// complianceDescription reads the compliance log topic of the incident root until it holds
// version of key, and returns its snapshot's description.
func (s *largeStack) complianceDescription(key string, version int64, timeout time.Duration) string {
	s.t.Helper()
	topic := s.cfg.Compliance.Log.Topic(s.cfg.Kafka, s.cfg.Model.Roots[0])
	opts, _ := kafkaconn.Opts(s.cfg.Kafka)
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(200*time.Millisecond))...)
	if err != nil {
		s.t.Fatal(err)
	}
	defer cl.Close()
	asm := chunked.NewAssembler(false)
	ctx := context.Background()
	var desc string
	found := false
	s.eventually(timeout, fmt.Sprintf("compliance version %d of %s in %s", version, key, topic), func() error {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		fs := asm.Fetches(cl.PollFetches(pctx))
		var ferr error
		fs.EachRecord(func(r *kgo.Record) {
			if found || ferr != nil || string(r.Key) != key {
				return
			}
			if err := chunked.Err(r); err != nil {
				ferr = err
				return
			}
			schema, body, err := s.reg.Resolve(ctx, r.Value)
			if err != nil {
				ferr = err
				return
			}
			codec, err := goavro.NewCodec(schema)
			if err != nil {
				ferr = err
				return
			}
			native, _, err := codec.NativeFromBinary(body)
			if err != nil {
				ferr = err
				return
			}
			m := native.(map[string]any)
			if m["version"].(int64) != version {
				return
			}
			d := m["snapshot"].(map[string]any)["description"]
			if u, ok := d.(map[string]any); ok {
				d = u["string"]
			}
			desc, _ = d.(string)
			found = true
		})
		if ferr != nil {
			s.t.Fatalf("compliance topic %s: %v", topic, ferr)
		}
		if !found {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	return desc
}

// rawChunks counts the chunk records topic holds (read as stored, up to its end offsets).
func (s *largeStack) rawChunks(topic string) int {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := 0
	opts, _ := kafkaconn.Opts(s.cfg.Kafka)
	ends, err := kadm.NewClient(s.cl).ListEndOffsets(ctx, topic)
	if err != nil {
		s.t.Fatal(err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.KeepControlRecords(), kgo.FetchMaxWait(200*time.Millisecond))...)
	if err != nil {
		s.t.Fatal(err)
	}
	defer cl.Close()
	for len(left) > 0 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if chunked.IsChunk(r) {
				n++
			}
			if r.Offset+1 >= left[r.Partition] {
				delete(left, r.Partition)
			}
		})
	}
	return n
}

// text is n bytes of pseudo-random base64 text: it neither compresses away nor needs escaping
// in JSON, so the delivered bytes can be compared with the stored ones.
func text(n int, seed uint64) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

// description is the payload's description, decoded (bodies are the JSON object as built).
func description(t *testing.T, body []byte) string {
	t.Helper()
	var p struct {
		Description string `json:"description"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("payload of %d bytes is not JSON: %v", len(body), err)
	}
	return p.Description
}

// checkThin checks a thin event of the incident key at version.
func checkThin(t *testing.T, req webhooktest.Request, eventType, key string, version, limit int) {
	t.Helper()
	var thin struct {
		EventType       string `json:"event_type"`
		RootKey         string `json:"root_key"`
		Version         int    `json:"version"`
		PayloadOmitted  string `json:"payload_omitted"`
		PayloadBytes    int    `json:"payload_bytes"`
		MaxPayloadBytes int    `json:"max_payload_bytes"`
	}
	if err := json.Unmarshal(req.Body, &thin); err != nil {
		t.Fatalf("thin event %s: %v", req.Body, err)
	}
	if thin.EventType != eventType || thin.RootKey != key || thin.Version != version || thin.PayloadOmitted != "size" ||
		thin.PayloadBytes <= limit || thin.MaxPayloadBytes != limit || req.Header.Get(webhook.HeaderPayloadOmitted) != "size" {
		t.Fatalf("thin event %s (headers %v)", req.Body, req.Header)
	}
}

// largeValueStory writes a value of size bytes into an incident's description, then (in one
// transaction, as the repro) a timeline row with a value of size/8, and checks: both
// versions reach the full subscription complete and byte-identical, the thin one as thin events,
// the compliance topic with the full description; the slot's confirmed_flush_lsn moves past
// them; and the next ordinary incident is delivered within seconds.
func largeValueStory(t *testing.T, size int) { runLargeValue(t, startLargeStack(t, 2*size), size) }

func runLargeValue(t *testing.T, s *largeStack, size int) {
	started := time.Now()
	big := text(size, uint64(size))
	s.exec(`insert into incident.instance (id, name, description, status, severity, start_time, session_instance_id, tenant_id)
		values (1, 'large', $1, 'TRIGGERED', 'LOW', now(), 1, 'acme')`, big)
	afterBig := s.walLSN()
	child := text(size/8, 3)
	s.exec(`begin; update incident.instance set status = 'RESOLVED' where id = 1;
		insert into incident.timeline (incident_instance_id, action, description, tenant_id) values (1, 'ESCALATED', '` + child + `', 'acme'); commit`)
	afterChild := s.walLSN()

	// The full subscription gets both versions whole: the value arrives byte for byte.
	v1 := s.delivery(s.full, "incident_instance_created", "1", 1, 3*time.Minute)
	if !bytes.Contains(v1.Body, []byte(`"description":"`+big+`"`)) || description(t, v1.Body) != big {
		t.Fatalf("version 1: %d-byte body does not carry the %d-byte description", len(v1.Body), len(big))
	}
	v2 := s.delivery(s.full, "incident_instance_updated", "1", 2, 2*time.Minute)
	if description(t, v2.Body) != big || !bytes.Contains(v2.Body, []byte(`"description":"`+child+`"`)) {
		t.Fatalf("version 2 (%d bytes) lacks the description or the timeline row's", len(v2.Body))
	}
	t.Logf("%d MiB value: versions 1 and 2 delivered %v after the insert (bodies %d and %d bytes)",
		size>>20, time.Since(started).Round(time.Millisecond), len(v1.Body), len(v2.Body))
	s.waitConfirmed(afterBig, time.Minute)
	s.waitConfirmed(afterChild, time.Minute)

	// The compliance topic keeps the full version.
	if got := s.complianceDescription("1", 1, 2*time.Minute); got != big {
		t.Fatalf("compliance version 1 has a %d-byte description, want the %d-byte value", len(got), len(big))
	}

	// The value went through every topic as chunk records (the brokers take at most
	// kafka.max_record_bytes per record).
	root := s.cfg.Model.Roots[0]
	for _, topic := range []string{s.cfg.Kafka.ChangeTopic(root), s.cfg.Kafka.SnapshotTopic(root), s.cfg.BubbleUpGroup() + ".changelog",
		s.cfg.Compliance.Log.Topic(s.cfg.Kafka, root), s.cfg.Compliance.Latest.Topic(s.cfg.Kafka, root)} {
		if n := s.rawChunks(topic); n < size/(1<<20) {
			t.Errorf("%s holds %d chunk records; a %d MiB value needs at least %d", topic, n, size>>20, size>>20)
		}
	}

	// The next ordinary transaction is delivered within seconds, and the slot moves past it.
	next := time.Now()
	s.exec(`insert into incident.instance (id, name, status, severity, start_time, session_instance_id, tenant_id)
		values (2, 'small', 'TRIGGERED', 'LOW', now(), 1, 'acme')`)
	afterSmall := s.walLSN()
	s.delivery(s.full, "incident_instance_created", "2", 1, 20*time.Second)
	t.Logf("the next ordinary incident was delivered %v after its commit", time.Since(next).Round(time.Millisecond))
	s.waitConfirmed(afterSmall, 20*time.Second)
}

// The repro: a 1 MiB incident description (and a timeline row with a large one in the
// same transaction) crashed cdc and then looped bubble-up; both versions now arrive whole.
func TestLargeValue20MiB(t *testing.T) { largeValueStory(t, 20<<20) }

// A 100 MiB value: PostgreSQL's text allows 1 GB; make chaos runs this one.
func TestLargeValueChaos100MiB(t *testing.T) {
	if os.Getenv("WALHOOK_CHAOS") == "" {
		t.Skip("a 100 MiB value takes a minute and a GiB of memory: set WALHOOK_CHAOS=1 (make chaos)")
	}
	largeValueStory(t, 100<<20)
}

// Deliveries above deliver.max_payload_bytes: the thin subscription receives a thin event, the
// full (dead_letter) one has the delivery dead-lettered with the reason; the compliance topic
// keeps the whole version; an ordinary incident after it is delivered to both in seconds.
func TestOversizeDeliveryThinOrDeadLetter(t *testing.T) {
	s := startLargeStack(t, 1<<20)
	big := text(3<<20, 11)
	s.exec(`insert into incident.instance (id, name, description, status, severity, start_time, session_instance_id, tenant_id)
		values (1, 'large', $1, 'TRIGGERED', 'LOW', now(), 1, 'acme')`, big)
	checkThin(t, s.delivery(s.thin, "incident_instance_created", "1", 1, 2*time.Minute), "incident_instance_created", "1", 1, 1<<20)
	var dead webhook.DeadLetter
	s.eventually(time.Minute, "the full subscription's delivery dead-lettered", func() error {
		found := false
		err := webhook.ReadDeadLetters(context.Background(), s.cfg.Kafka, func(d webhook.DeadLetter) error {
			if d.Job.Snapshot.Key == "1" && d.Job.Snapshot.Version == 1 {
				dead, found = d, true
			}
			return nil
		})
		if err == nil && !found {
			err = fmt.Errorf("no dead letter of incident 1 yet")
		}
		return err
	})
	if !strings.Contains(dead.Job.LastError, "deliver.max_payload_bytes") || !bytes.Contains(dead.Job.Snapshot.Payload, []byte(big)) {
		t.Fatalf("dead letter: error %q, payload of %d bytes", dead.Job.LastError, len(dead.Job.Snapshot.Payload))
	}
	if got, err := webhook.DeadLetterAt(context.Background(), s.cfg.Kafka, dead.Partition, dead.Offset); err != nil || !bytes.Equal(got.Job.Snapshot.Payload, dead.Job.Snapshot.Payload) {
		t.Fatalf("DeadLetterAt(%d-%d) of the chunked dead letter: %v (payload %d bytes)", dead.Partition, dead.Offset, err, len(got.Job.Snapshot.Payload))
	}
	if n := len(s.full.Requests()); n != 0 {
		t.Fatalf("the dead_letter subscription received %d requests", n)
	}
	if got := s.complianceDescription("1", 1, time.Minute); got != big {
		t.Fatalf("compliance version 1 has a %d-byte description, want %d bytes", len(got), len(big))
	}
	s.exec(`insert into incident.instance (id, name, status, severity, start_time, session_instance_id, tenant_id)
		values (2, 'small', 'TRIGGERED', 'LOW', now(), 1, 'acme')`)
	s.delivery(s.full, "incident_instance_created", "2", 1, 20*time.Second)
	s.delivery(s.thin, "incident_instance_created", "2", 1, 20*time.Second)
}

// A large delivery that fails goes through the retry topic as a chunked job (its snapshot is
// several records' worth): it is reassembled there and delivered whole on the retry.
func TestLargeValueRetriedThroughTheRetryTopic(t *testing.T) {
	s := startLargeStack(t, 64<<20)
	s.full.Respond(func(n int, _ webhooktest.Request) webhooktest.Response {
		if n == 0 {
			return webhooktest.Response{Status: 503}
		}
		return webhooktest.Response{}
	})
	big := text(3<<20, 5)
	s.exec(`insert into incident.instance (id, name, description, status, severity, start_time, session_instance_id, tenant_id)
		values (1, 'large', $1, 'TRIGGERED', 'LOW', now(), 1, 'acme')`, big)
	s.eventually(time.Minute, "the retried delivery", func() error {
		reqs := s.full.Requests()
		if len(reqs) < 2 {
			return fmt.Errorf("%d requests", len(reqs))
		}
		for _, r := range reqs[:2] {
			if r.Header.Get(webhook.HeaderVersion) != "1" || description(t, r.Body) != big {
				t.Fatalf("request of %d bytes, version %s: not the whole version 1", len(r.Body), r.Header.Get(webhook.HeaderVersion))
			}
		}
		if reqs[0].Header.Get("webhook-id") != reqs[1].Header.Get("webhook-id") || reqs[1].Header.Get(webhook.HeaderAttempt) != "2" {
			t.Fatalf("retry: webhook-id %s then %s, attempt %s", reqs[0].Header.Get("webhook-id"), reqs[1].Header.Get("webhook-id"), reqs[1].Header.Get(webhook.HeaderAttempt))
		}
		return nil
	})
	if n := s.rawChunks(s.cfg.Kafka.WebhookRetryTopic(s.cfg.Deliver.RetryTiers[0])); n < 4 {
		t.Fatalf("the retry topic holds %d chunk records; the job of a 3 MiB payload is at least 4 MiB", n)
	}
}

// A state above kafka.max_record_bytes is a chunk group in the changelog: a bubble-up member
// killed and started again (a static member, so it takes its partitions over at once) restores
// it whole. The update after the restart carries the large
// description as unchanged TOAST (pgoutput leaves it out), so version 2's description can only
// come from the restored state.
func TestLargeStateRestoredFromTheChangelog(t *testing.T) {
	s := startLargeStack(t, 64<<20, true)
	big := text(8<<20, 9)
	s.exec(`insert into incident.instance (id, name, description, status, severity, start_time, session_instance_id, tenant_id)
		values (1, 'large', $1, 'TRIGGERED', 'LOW', now(), 1, 'acme')`, big)
	if v1 := s.delivery(s.full, "incident_instance_created", "1", 1, 2*time.Minute); description(t, v1.Body) != big {
		t.Fatalf("version 1: %d bytes without the description", len(v1.Body))
	}
	s.killProc("bubbleup")
	s.startProc("bubbleup")
	s.exec(`update incident.instance set status = 'RESOLVED' where id = 1`)
	after := s.walLSN()
	v2 := s.delivery(s.full, "incident_instance_updated", "1", 2, 2*time.Minute)
	if description(t, v2.Body) != big || !bytes.Contains(v2.Body, []byte(`"status":"RESOLVED"`)) {
		t.Fatalf("version 2 after the restore (%d bytes) lacks the description or the new status", len(v2.Body))
	}
	s.waitConfirmed(after, time.Minute)
	s.exec(`insert into incident.instance (id, name, status, severity, start_time, session_instance_id, tenant_id)
		values (2, 'small', 'TRIGGERED', 'LOW', now(), 1, 'acme')`)
	s.delivery(s.full, "incident_instance_created", "2", 1, 20*time.Second)
}

// A root with 50,000 subordinate rows, written in one transaction, is one version with all of
// them; the next change of it and an ordinary incident after it are delivered within seconds.
func TestRootWith50000Subordinates(t *testing.T) { runManyRows(t, startLargeStack(t, 64<<20), 50000) }

func runManyRows(t *testing.T, s *largeStack, rows int) {
	s.exec(`insert into incident.instance (id, name, status, severity, start_time, session_instance_id, tenant_id)
		values (1, 'many', 'TRIGGERED', 'LOW', now(), 1, 'acme')`)
	// The demo's trigger touches the incident for every timeline row: 50,000 updates of one row
	// in one transaction take PostgreSQL a quadratic 40 s. The rows are what matters here.
	s.exec(`begin; set local session_replication_role = replica;
		insert into incident.timeline (incident_instance_id, action, description, tenant_id)
		select 1, 'COMMENTED', 'comment number ' || g, 'acme' from generate_series(1, ` + strconv.Itoa(rows) + `) g; commit`)
	started := time.Now()
	after := s.walLSN()
	checkTimeline := func(req webhooktest.Request, want int) {
		t.Helper()
		var p struct {
			Timeline []struct {
				ID          int    `json:"id"`
				Description string `json:"description"`
			} `json:"timeline"`
		}
		if err := json.Unmarshal(req.Body, &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Timeline) != want {
			t.Fatalf("timeline of %d rows, want %d", len(p.Timeline), want)
		}
		for i, r := range p.Timeline {
			if i > 0 && r.ID <= p.Timeline[i-1].ID {
				t.Fatalf("timeline not ordered by id at %d: %d after %d", i, r.ID, p.Timeline[i-1].ID)
			}
			if i < rows && r.Description != "comment number "+strconv.Itoa(i+1) {
				t.Fatalf("timeline row %d: %q", i, r.Description)
			}
		}
	}
	v2 := s.delivery(s.full, "incident_instance_updated", "1", 2, 3*time.Minute)
	checkTimeline(v2, rows)
	t.Logf("root with %d subordinates: version 2 (%d bytes) delivered %v after the commit", rows, len(v2.Body), time.Since(started).Round(time.Millisecond))
	s.waitConfirmed(after, time.Minute)

	next := time.Now()
	s.exec(`insert into incident.timeline (incident_instance_id, action, description, tenant_id) values (1, 'COMMENTED', 'one more', 'acme')`)
	checkTimeline(s.delivery(s.full, "incident_instance_updated", "1", 3, 30*time.Second), rows+1)
	s.exec(`insert into incident.instance (id, name, status, severity, start_time, session_instance_id, tenant_id)
		values (2, 'small', 'TRIGGERED', 'LOW', now(), 1, 'acme')`)
	afterSmall := s.walLSN()
	s.delivery(s.full, "incident_instance_created", "2", 1, 20*time.Second)
	t.Logf("the next change of the root and an ordinary incident were delivered %v after the first", time.Since(next).Round(time.Millisecond))
	s.waitConfirmed(afterSmall, 20*time.Second)
}

// Every topic walhook writes is checked at start against kafka.max_record_bytes: one whose
// max.message.bytes is smaller stops the stage with the topic, both values and the fix.
func TestRecordLimitCheckedAgainstTopics(t *testing.T) {
	env := kafkatest.Start(t)
	cl := kafkatest.Client(t, env)
	adm := kadm.NewClient(cl)
	topic := kafkatest.TopicName(t, "small")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	small := "200000"
	if _, err := adm.CreateTopic(ctx, 1, -1, map[string]*string{"max.message.bytes": &small}, topic); err != nil {
		t.Fatal(err)
	}
	if err := kafkaconn.WaitForTopics(ctx, adm, topic); err != nil {
		t.Fatal(err)
	}
	k := config.Kafka{MaxRecordBytes: 1 << 20}
	err := kafkaconn.CheckRecordLimit(ctx, adm, k, topic)
	for _, want := range []string{topic, "max.message.bytes=200000", "kafka.max_record_bytes=1048576", "--add-config max.message.bytes=1048576"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("CheckRecordLimit: %v; want it to name %q", err, want)
		}
	}
	k.MaxRecordBytes = 200000
	if err := kafkaconn.CheckRecordLimit(ctx, adm, k, topic); err != nil {
		t.Fatalf("a limit the topic takes: %v", err)
	}
	// Topics walhook creates get the limit.
	created := kafkatest.TopicName(t, "created")
	k.MaxRecordBytes = 3 << 20
	if err := kafkaconn.EnsureTopics(ctx, adm, kafkaconn.WithRecordLimits(k, []kafkaconn.TopicSpec{{Name: created, Partitions: 1, ReplicationFactor: -1}})); err != nil {
		t.Fatal(err)
	}
	if err := kafkaconn.CheckRecordLimit(ctx, adm, k, created); err != nil {
		t.Fatalf("a topic created with the limit: %v", err)
	}
	k.MaxRecordBytes = 4 << 20
	if err := kafkaconn.EnsureTopics(ctx, adm, kafkaconn.WithRecordLimits(k, []kafkaconn.TopicSpec{{Name: created, Partitions: 1, ReplicationFactor: -1}})); err == nil || !strings.Contains(err.Error(), created) {
		t.Fatalf("EnsureTopics with a limit above the existing topic's: %v", err)
	}
}

// The peak RSS of each stage, each its own process, with a 100 MiB value and with a root of
// 50,000 subordinate rows (docs/operations.md "Large values" reports these numbers).
func TestLargeValueChaosStageMemory(t *testing.T) {
	if os.Getenv("WALHOOK_CHAOS") == "" {
		t.Skip("runs every stage as a process with a 100 MiB value: set WALHOOK_CHAOS=1 (make chaos)")
	}
	for _, c := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"100 MiB value", func(t *testing.T) {
			s := startLargeStack(t, 256<<20, true)
			runLargeValue(t, s, 100<<20)
			logRSS(t, "100 MiB value", s.peakRSS())
		}},
		{"root of 50000 rows", func(t *testing.T) {
			s := startLargeStack(t, 64<<20, true)
			runManyRows(t, s, 50000)
			logRSS(t, "root of 50,000 subordinate rows", s.peakRSS())
		}},
	} {
		t.Run(c.name, c.run)
	}
}

func logRSS(t *testing.T, what string, rss map[string]int) {
	t.Logf("peak RSS (VmHWM) with a %s: cdc %d MiB, bubbleup %d MiB, deliver %d MiB, comply %d MiB",
		what, rss["cdc"], rss["bubbleup"], rss["deliver"], rss["comply"])
}
