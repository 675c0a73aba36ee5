package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/linkedin/goavro/v2"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/deadletter"
	"github.com/walhook/walhook/internal/kafkaconn"
	"github.com/walhook/walhook/sinks/webhook"
	"github.com/walhook/walhook/sinks/webhook/webhooktest"
)

const rootType = "incident.instance"

// expected is what the writers' ledgers say the pipeline must produce.
type expected struct {
	roots      map[string]*rootExp // by root key
	versions   int                 // snapshot versions in total
	deliveries int                 // (subscription, root, version) triples that must arrive
}

type rootExp struct {
	key     string
	tenant  string
	txns    int // committed source transactions that touched the root = versions
	deleted bool
	led     *ledger
	// objects are the objects the database built in those transactions, in commit order:
	// version n's payload must be objects[n-1].
	objects []json.RawMessage
}

// verb is the verb version v of the root must have: created first, deleted last for a
// soft-deleted root (it is never touched after), updated otherwise.
func (r *rootExp) verb(v int) avro.Verb {
	switch {
	case v == 1:
		return avro.VerbCreated
	case v == r.txns && r.deleted:
		return avro.VerbDeleted
	}
	return avro.VerbUpdated
}

func (e *expected) String() string {
	return fmt.Sprintf("snapshots=%d compliance=%d deliveries>=%d", e.versions, e.versions, e.deliveries)
}

func expectations(ledgers []*ledger, subs []*sub) *expected {
	e := &expected{roots: map[string]*rootExp{}}
	for _, l := range ledgers {
		for id, n := range l.rootTxns {
			r := &rootExp{key: strconv.Itoa(id), tenant: l.tenant, txns: n, deleted: l.deleted[id], led: l, objects: l.objects[id]}
			e.roots[r.key] = r
			e.versions += n
			for v := 1; v <= n; v++ {
				for _, s := range subs {
					if s.matches(r, v) {
						e.deliveries++
					}
				}
			}
		}
	}
	return e
}

func (s *sub) matches(r *rootExp, v int) bool {
	return s.tenant == r.tenant && s.event == rootType+"."+r.verb(v).String()
}

// observed is what the run produced, decoded.
type observed struct {
	snaps  map[string][]avro.Snapshot // by root key, in topic order
	logs   map[string][]int64         // compliance log versions by key, in topic order
	latest map[string]int64           // compliance latest: the last version per key
	bad    []string                   // records that could not be decoded
}

// snapshot returns version v of key, or nil.
func (o *observed) snapshot(key string, v int64) *avro.Snapshot {
	for i := range o.snaps[key] {
		if o.snaps[key][i].Version == v {
			return &o.snaps[key][i]
		}
	}
	return nil
}

func (s *system) observe(t *testing.T) *observed {
	t.Helper()
	opts, err := kafkaconn.Opts(s.cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	reg, err := kafkaconn.AvroRegistry(s.cfg, cl)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	o := &observed{snaps: map[string][]avro.Snapshot{}, logs: map[string][]int64{}, latest: map[string]int64{}}
	for _, r := range s.tap.take(s.tap.snapTopic) {
		_, body, err := reg.Resolve(ctx, r.Value)
		var snap avro.Snapshot
		if err == nil {
			snap, err = avro.DecodeSnapshot(body)
		}
		if err == nil && snap.Key != string(r.Key) {
			err = fmt.Errorf("record key %q but snapshot key %q", r.Key, snap.Key)
		}
		if err != nil {
			o.bad = append(o.bad, fmt.Sprintf("%s[%d]@%d: %v", r.Topic, r.Partition, r.Offset, err))
			continue
		}
		o.snaps[snap.Key] = append(o.snaps[snap.Key], snap)
	}
	codecs := map[string]*goavro.Codec{}
	compliance := func(r *kgo.Record) (key string, version int64, err error) {
		schema, body, err := reg.Resolve(ctx, r.Value)
		if err != nil {
			return "", 0, err
		}
		codec := codecs[schema]
		if codec == nil {
			if codec, err = goavro.NewCodec(schema); err != nil {
				return "", 0, err
			}
			codecs[schema] = codec
		}
		native, _, err := codec.NativeFromBinary(body)
		if err != nil {
			return "", 0, err
		}
		m, _ := native.(map[string]any)
		key, _ = m["key"].(string)
		version, _ = m["version"].(int64)
		if key != string(r.Key) {
			return "", 0, fmt.Errorf("record key %q but compliance key %q", r.Key, key)
		}
		return key, version, nil
	}
	for _, topic := range []string{s.tap.logTopic, s.tap.latestTopic} {
		for _, r := range s.tap.take(topic) {
			if r.Value == nil {
				delete(o.latest, string(r.Key))
				continue
			}
			key, v, err := compliance(r)
			if err != nil {
				o.bad = append(o.bad, fmt.Sprintf("%s[%d]@%d: %v", r.Topic, r.Partition, r.Offset, err))
				continue
			}
			if topic == s.tap.logTopic {
				o.logs[key] = append(o.logs[key], v)
			} else {
				o.latest[key] = v
			}
		}
	}
	return o
}

// report collects failures so that one run reports all of them, each with the seed and what
// the nemesis did around it.
type report struct {
	t         *testing.T
	seed      uint64
	nem       *nemesis
	brokerNem *brokerNemesis // nil without broker faults
	failures  []string

	dups      int
	requests  int
	lags      []time.Duration
	delivered int
	payloads  int // versions whose payload differs from their transaction's object (the first ten are reported)
}

func (r *report) fail(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

func (r *report) finish() {
	if r.payloads > 10 {
		r.fail("snapshot topic: %d versions in all differ from the objects of their source transactions (the first ten above)", r.payloads)
	}
	if len(r.failures) == 0 {
		return
	}
	const show = 40
	msg := r.failures
	if len(msg) > show {
		msg = append(msg[:show:show], fmt.Sprintf("... and %d more", len(r.failures)-show))
	}
	r.t.Errorf("seed %d (rerun with %s=%d): %d failures:\n%s", r.seed, envSeed, r.seed, len(r.failures), strings.Join(msg, "\n"))
}

// checkSnapshots: per root, versions exactly 1..n in the snapshot topic, n being the number of
// committed source transactions that touched it, with the verbs, tenant and increasing commit
// LSNs that implies, and no hidden column in any payload.
func checkSnapshots(rep *report, exp *expected, obs *observed) {
	for _, b := range obs.bad {
		rep.fail("undecodable record %s", b)
	}
	for _, key := range sortedKeys(obs.snaps) {
		if exp.roots[key] == nil {
			rep.fail("snapshot topic: root %s has %d versions but no committed transaction touched it", key, len(obs.snaps[key]))
		}
	}
	for _, key := range sortedKeys(exp.roots) {
		want, got := exp.roots[key], obs.snaps[key]
		var prevLSN uint64
		for i, s := range got {
			at := fmt.Sprintf("root %s (tenant %s) version %d (%s, commit LSN %X, commit %s; %s)", key, want.tenant, s.Version, s.Verb,
				s.CommitLSN, s.CommitTime.Format("15:04:05.000"), rep.nem.near(s.CommitTime))
			switch {
			case s.Version != int64(i+1):
				rep.fail("snapshot topic: %s: is record #%d of the root; want version %d (gap or repeat)", at, i+1, i+1)
			case int(s.Version) <= want.txns && s.Verb != want.verb(int(s.Version)):
				rep.fail("snapshot topic: %s: want verb %s", at, want.verb(int(s.Version)))
			}
			if s.CommitLSN <= prevLSN {
				rep.fail("snapshot topic: %s: commit LSN not after the previous version's %X: two versions for one transaction", at, prevLSN)
			}
			prevLSN = s.CommitLSN
			if s.Tenant != want.tenant {
				rep.fail("snapshot topic: %s: tenant %q", at, s.Tenant)
			}
			if hidden := hiddenColumns(s.Payload); len(hidden) > 0 {
				rep.fail("snapshot topic: %s: payload shows %v", at, hidden)
			}
			if i < len(want.objects) && !jsonEqual(want.objects[i], s.Payload) {
				rep.payloads++
				if rep.payloads <= 10 {
					rep.fail("snapshot topic: %s: payload differs from the object the database built in the source transaction:\n%s\n got %s\nwant %s",
						at, diffJSON(want.objects[i], s.Payload), clip(string(s.Payload)), clip(string(want.objects[i])))
				}
			}
		}
		if len(got) != want.txns {
			last := "none"
			if len(got) > 0 {
				s := got[len(got)-1]
				last = fmt.Sprintf("v%d %s commit %s (%s)", s.Version, s.Verb, s.CommitTime.Format("15:04:05.000"), rep.nem.near(s.CommitTime))
			}
			rep.fail("snapshot topic: root %s (tenant %s): %d versions, but %d committed transactions touched it; last version: %s",
				key, want.tenant, len(got), want.txns, last)
		}
	}
}

// diffJSON names the top-level members of two JSON objects that differ.
func diffJSON(want, got []byte) string {
	var w, g map[string]any
	_ = json.Unmarshal(want, &w)
	_ = json.Unmarshal(got, &g)
	return diff(w, g)
}

// clip shortens s to about 600 bytes for a failure message.
func clip(s string) string {
	if len(s) <= 600 {
		return s
	}
	return s[:600] + fmt.Sprintf("… (%d bytes)", len(s))
}

// hiddenColumns lists tenant_id and is_deleted wherever they appear in a payload.
func hiddenColumns(payload []byte) []string {
	var v any
	if err := json.Unmarshal(payload, &v); err != nil {
		return []string{"invalid JSON: " + err.Error()}
	}
	var out []string
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if k == "tenant_id" || k == "is_deleted" {
					out = append(out, path+"."+k)
				}
				walk(path+"."+k, c)
			}
		case []any:
			for i, c := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), c)
			}
		}
	}
	walk("$", v)
	return out
}

// checkCompliance: every version exactly once and in order per key in the append-only topic,
// and the compacted topic's last record of each root is its last version.
func checkCompliance(rep *report, exp *expected, obs *observed) {
	for _, key := range sortedKeys(obs.logs) {
		if exp.roots[key] == nil {
			rep.fail("compliance log: root %s has versions %v but no committed transaction touched it", key, obs.logs[key])
		}
	}
	for _, key := range sortedKeys(exp.roots) {
		want, got := exp.roots[key], obs.logs[key]
		if !isOneToN(got, want.txns) {
			rep.fail("compliance log: root %s (tenant %s): versions %v, want 1..%d once each in order", key, want.tenant, got, want.txns)
		}
		if obs.latest[key] != int64(want.txns) {
			rep.fail("compliance latest: root %s (tenant %s): last record is version %d, want %d", key, want.tenant, obs.latest[key], want.txns)
		}
	}
}

type delivery struct {
	sub     *sub
	key     string
	version int64
}

// checkDeliveries: every request is a correctly signed, correctly identified delivery of a root
// of the subscription's tenant whose body is that version's payload; every matching
// subscription got every version of every root of its tenant at least once.
func checkDeliveries(rep *report, exp *expected, obs *observed, subs []*sub) {
	byPath := map[string]*sub{}
	seen := map[*webhooktest.Receiver]bool{}
	var recvs []*webhooktest.Receiver
	for _, s := range subs {
		byPath[s.recv.URL()+s.path] = s
		if !seen[s.recv] {
			seen[s.recv] = true
			recvs = append(recvs, s.recv)
		}
	}
	got := map[delivery]int{}
	first := map[delivery]time.Time{}
	for _, rv := range recvs {
		for _, req := range rv.Requests() {
			rep.requests++
			s := byPath[rv.URL()+req.Path]
			if s == nil {
				rep.fail("receiver %s: request to unknown path %s", rv.URL(), req.Path)
				continue
			}
			var body struct {
				ID json.Number `json:"id"`
			}
			_ = json.Unmarshal(req.Body, &body)
			key := body.ID.String()
			version, _ := strconv.ParseInt(req.Header.Get(webhook.HeaderVersion), 10, 64)
			at := fmt.Sprintf("subscription %s (%s %s) got root %s version %d at %s", s.uuid, s.tenant, s.event, key, version, req.At.Format("15:04:05.000"))
			root := exp.roots[key]
			if root == nil {
				rep.fail("deliveries: %s: no such root was written", at)
				continue
			}
			if root.tenant != s.tenant {
				rep.fail("deliveries: %s: the root belongs to tenant %s (tenant leak)", at, root.tenant)
				continue
			}
			if wantEvent := strings.ReplaceAll(s.event, ".", "_"); req.Header.Get(webhook.HeaderEventType) != wantEvent {
				rep.fail("deliveries: %s: event type %q, want %q", at, req.Header.Get(webhook.HeaderEventType), wantEvent)
			}
			if id := webhook.MessageID(s.uuid, rootType, key, version); req.Header.Get("webhook-id") != id {
				rep.fail("deliveries: %s: webhook-id %q, want %q", at, req.Header.Get("webhook-id"), id)
			}
			if err := verify(s.secret, req.Body, req.Header, req.At); err != nil {
				rep.fail("deliveries: %s: signature: %v", at, err)
			}
			snap := obs.snapshot(key, version)
			switch {
			case snap == nil:
				rep.fail("deliveries: %s: that version is not in the snapshot topic", at)
			case !jsonEqual(snap.Payload, req.Body):
				rep.fail("deliveries: %s (%s): body differs from the committed snapshot's payload\n got %s\nwant %s", at, rep.nem.near(req.At), req.Body, snap.Payload)
			default:
				d := delivery{s, key, version}
				if got[d] == 0 || req.At.Before(first[d]) {
					first[d] = req.At
				}
				got[d]++
			}
		}
	}
	for _, s := range subs {
		for _, key := range sortedKeys(exp.roots) {
			r := exp.roots[key]
			for v := 1; v <= r.txns; v++ {
				if !s.matches(r, v) {
					continue
				}
				d := delivery{s, key, int64(v)}
				n := got[d]
				if n == 0 {
					near := ""
					if snap := obs.snapshot(key, int64(v)); snap != nil {
						near = fmt.Sprintf("; snapshot committed %s, %s", snap.CommitTime.Format("15:04:05.000"), rep.nem.near(snap.CommitTime))
					}
					rep.fail("deliveries: subscription %s (%s %s) never got root %s version %d%s", s.uuid, s.tenant, s.event, key, v, near)
					continue
				}
				rep.delivered++
				rep.dups += n - 1
				if snap := obs.snapshot(key, int64(v)); snap != nil {
					rep.lags = append(rep.lags, first[d].Sub(snap.CommitTime))
				}
			}
		}
	}
}

// verify checks a request the way its receiver did when it arrived at at: the signature, and a
// webhook-timestamp within the Standard Webhooks tolerance of at. The library's Verify measures
// the tolerance from now, which fails every early delivery of a run longer than the tolerance.
func verify(secret string, body []byte, h http.Header, at time.Time) error {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return err
	}
	if err := wh.VerifyIgnoringTimestamp(body, h); err != nil {
		return err
	}
	sec, err := strconv.ParseInt(h.Get(standardwebhooks.HeaderWebhookTimestamp), 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q: %v", h.Get(standardwebhooks.HeaderWebhookTimestamp), err)
	}
	const tolerance = 5 * time.Minute // the library's, for receivers
	if d := at.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook-timestamp %s is %s from the receipt at %s, beyond the %s tolerance", time.Unix(sec, 0).Format(time.RFC3339), d, at.Format(time.RFC3339), tolerance)
	}
	return nil
}

// payloadSQL renders every live root the way the contract's payload shows it: root columns
// without tenant_id and is_deleted, the session reference, the live timeline ordered by id;
// timestamps in UTC with milliseconds.
const payloadSQL = `
WITH ts AS (SELECT 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"' AS f)
SELECT i.id::text, i.session_instance_id, json_build_object(
  'id', i.id, 'name', i.name, 'description', i.description, 'status', i.status, 'severity', i.severity,
  'start_time', to_char(i.start_time AT TIME ZONE 'UTC', ts.f), 'end_time', to_char(i.end_time AT TIME ZONE 'UTC', ts.f),
  'resolution_notes', i.resolution_notes, 'session_instance_id', i.session_instance_id, 'external_id', i.external_id,
  'created_at', to_char(i.created_at AT TIME ZONE 'UTC', ts.f), 'created_by', i.created_by,
  'updated_at', to_char(i.updated_at AT TIME ZONE 'UTC', ts.f), 'updated_by', i.updated_by,
  'session', (SELECT json_build_object('id', s.id, 'uuid', s.uuid, 'score', s.score, 'status', s.status,
      'created_at', to_char(s.created_at AT TIME ZONE 'UTC', ts.f), 'updated_at', to_char(s.updated_at AT TIME ZONE 'UTC', ts.f))
    FROM session.instance s WHERE s.id = i.session_instance_id),
  'timeline', coalesce((SELECT json_agg(json_build_object('id', tl.id, 'action', tl.action, 'description', tl.description,
      'created_at', to_char(tl.created_at AT TIME ZONE 'UTC', ts.f), 'created_by', tl.created_by,
      'updated_at', to_char(tl.updated_at AT TIME ZONE 'UTC', ts.f), 'updated_by', tl.updated_by) ORDER BY tl.id)
    FROM incident.timeline tl WHERE tl.incident_instance_id = i.id AND NOT tl.is_deleted), '[]'::json)
)::text
FROM incident.instance i, ts WHERE NOT i.is_deleted`

// checkPayloads: the last snapshot of every live root equals the database. The session part is
// compared only when the session did not change after the root's last transaction (the
// reference may legitimately be newer than the change).
func checkPayloads(rep *report, sys *system, exp *expected, obs *observed, _ []*ledger) {
	conn := sys.connect(rep.t)
	rows, err := conn.Query(context.Background(), payloadSQL)
	if err != nil {
		rep.t.Fatalf("payload query: %v", err)
	}
	defer rows.Close()
	live := map[string]bool{}
	for rows.Next() {
		var key, doc string
		var session int
		if err := rows.Scan(&key, &session, &doc); err != nil {
			rep.t.Fatal(err)
		}
		live[key] = true
		r := exp.roots[key]
		snaps := obs.snaps[key]
		if r == nil || len(snaps) == 0 {
			rep.fail("payloads: live root %s has no snapshot", key)
			continue
		}
		last := snaps[len(snaps)-1]
		var want, got map[string]any
		if err := json.Unmarshal([]byte(doc), &want); err != nil {
			rep.t.Fatal(err)
		}
		if err := json.Unmarshal(last.Payload, &got); err != nil {
			rep.fail("payloads: root %s v%d: %v", key, last.Version, err)
			continue
		}
		id, _ := strconv.Atoi(key)
		if r.led.sessLast[session] > r.led.rootLast[id] {
			delete(want, "session")
			delete(got, "session")
		}
		if !reflect.DeepEqual(want, got) {
			rep.fail("payloads: root %s (tenant %s) last snapshot v%d (commit %s; %s) differs from the database:\n%s\n got %s\nwant %s",
				key, r.tenant, last.Version, last.CommitTime.Format("15:04:05.000"), rep.nem.near(last.CommitTime), diff(want, got), last.Payload, doc)
		}
	}
	if err := rows.Err(); err != nil {
		rep.t.Fatal(err)
	}
	for _, key := range sortedKeys(exp.roots) {
		r := exp.roots[key]
		if r.deleted == live[key] {
			rep.fail("payloads: root %s: writer says deleted=%t, database says live=%t", key, r.deleted, live[key])
		}
	}
}

// diff names the top-level members that differ.
func diff(want, got map[string]any) string {
	var out []string
	for k := range want {
		if !reflect.DeepEqual(want[k], got[k]) {
			out = append(out, fmt.Sprintf("  %s: got %v, want %v", k, got[k], want[k]))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			out = append(out, fmt.Sprintf("  %s: unexpected (%v)", k, got[k]))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func (r *report) summary(sys *system, exp *expected, obs *observed, ledgers []*ledger, dur, drain time.Duration) {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	var txns, rollbacks, multi, withSess, deleted, sessDel, bursts int
	for _, l := range ledgers {
		txns += l.txns
		rollbacks += l.rollbacks
		multi += l.multiRoot
		withSess += l.sessInTxn
		deleted += len(l.deleted)
		sessDel += l.sessDel
		bursts += l.bursts
	}
	versions, logs := 0, 0
	for _, s := range obs.snaps {
		versions += len(s)
	}
	for _, l := range obs.logs {
		logs += len(l)
	}
	slices.Sort(r.lags)
	lagMax, lagP50 := time.Duration(0), time.Duration(0)
	if len(r.lags) > 0 {
		lagMax, lagP50 = r.lags[len(r.lags)-1], r.lags[len(r.lags)/2]
	}
	fmt.Fprintf(w, "seed\t%d\n", r.seed)
	fmt.Fprintf(w, "workload / drain\t%s / %s\n", dur, drain.Round(time.Millisecond))
	fmt.Fprintf(w, "transactions\t%d committed (%d multi-root, %d with a session change, %d bursts of 100), %d rolled back; %d sessions deleted\n",
		txns, multi, withSess, bursts, rollbacks, sessDel)
	fmt.Fprintf(w, "roots\t%d (%d soft-deleted) over %d tenants\n", len(exp.roots), deleted, len(ledgers))
	fmt.Fprintf(w, "snapshot versions\t%d (expected %d), %d with a payload other than their transaction's object\n", versions, exp.versions, r.payloads)
	fmt.Fprintf(w, "compliance records\t%d (expected %d)\n", logs, exp.versions)
	fmt.Fprintf(w, "deliveries\t%d of %d expected, %d requests, %d duplicates\n", r.delivered, exp.deliveries, r.requests, r.dups)
	fmt.Fprintf(w, "delivery lag\tmax %s, p50 %s (commit to first receipt)\n", lagMax.Round(time.Millisecond), lagP50.Round(time.Millisecond))
	fmt.Fprintf(w, "stage\tstarts\tkills\tunexpected exits\n")
	for _, p := range sys.procs {
		starts, kills, crashes := p.stats()
		fmt.Fprintf(w, "  %s\t%d\t%d\t%d %s\n", p.name, starts, kills, len(crashes), strings.Join(crashes, "; "))
	}
	_ = w.Flush()
	fmt.Fprintf(&b, "broker: %s\n", sys.kafka.describe())
	if r.brokerNem != nil {
		b.WriteString(r.brokerNem.String())
	}
	r.t.Logf("summary\n%s", b.String())
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, _ := strconv.Atoi(keys[i])
		b, _ := strconv.Atoi(keys[j])
		return a < b
	})
	return keys
}

// isOneToN reports whether vs is exactly 1, 2, …, n.
func isOneToN(vs []int64, n int) bool {
	if len(vs) != n {
		return false
	}
	for i, v := range vs {
		if v != int64(i+1) {
			return false
		}
	}
	return true
}

// checkNoPoison: the workload writes only well-formed input, so no stage may have copied a record
// to its poison topic: a poison record is a snapshot, compliance record or delivery that was
// skipped, and each is reported with its reason.
func checkNoPoison(t *testing.T, rep *report, s *system) {
	t.Helper()
	for _, stage := range config.PoisonStages() {
		err := deadletter.Read(t.Context(), s.cfg, stage, func(e deadletter.Entry) error {
			rep.fail("stage %s copied %s to its poison topic: %s", stage, e.Source, e.Reason)
			return nil
		})
		if err != nil {
			rep.fail("read the %s poison topic: %v", stage, err)
		}
	}
}
