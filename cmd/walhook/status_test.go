package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/kafkatest"
	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/internal/status"
)

func runStatus(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newStatusCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// TestStatus runs `walhook status` against a real PostgreSQL with the demo schema and a real
// logical slot holding back WAL, and a broker where the webhook group lags on a snapshot
// partition and one delivery is dead-lettered.
func TestStatus(t *testing.T) {
	ctx := t.Context()
	url := pgtest.NewDatabase(t, pgtest.Start(t))
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, demo.SchemaSQL); err != nil {
		t.Fatal(err)
	}
	slot := fmt.Sprintf("status_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot); err != nil {
		t.Fatal(err)
	}
	// WAL after the slot's confirmed position: the slot now holds it back.
	if _, err := conn.Exec(ctx, `CREATE TABLE public.filler AS SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 2000) g`); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, `WITH app AS (INSERT INTO hook.application (name) VALUES ('crm') RETURNING id)
		INSERT INTO hook.subscription (application_id, tenant_id, event_type, url, secret, is_enabled, disabled_at, disabled_reason)
		SELECT id, 'acme', 'incident_instance_updated', 'https://hooks.example.com/gone', 'whsec_x', false, now(), 'gone' FROM app`)
	if err != nil {
		t.Fatal(err)
	}

	env := kafkatest.Start(t)
	prefix := kafkatest.TopicName(t, "st") + "."
	path := writeConfig(t, fmt.Sprintf(`postgres: {url: %q, slot: %s}
kafka: {brokers: [%s], topic_prefix: %q, partitions: 3}
model:
  roots:
    - table: incident.instance
      event_prefix: incident.instance
      key: id
`, url, slot, strings.Join(env.Brokers, ","), prefix))

	snapshots, dlq, group := prefix+"snapshots.incident.instance", prefix+"webhook.dlq", prefix+"webhook"
	adm := kadm.NewClient(kafkatest.Client(t, env))
	for topic, parts := range map[string]int32{snapshots: 3, dlq: 1} {
		if resp, err := adm.CreateTopic(ctx, parts, -1, nil, topic); err != nil || resp.Err != nil {
			t.Fatalf("create %s: %v %v", topic, err, resp.Err)
		}
	}
	cl := kafkatest.Client(t, env, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for i := range 5 {
		rec := &kgo.Record{Topic: snapshots, Partition: 1, Key: []byte("42"), Value: []byte(fmt.Sprint(i)), Timestamp: base.Add(time.Duration(i) * time.Minute)}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: dlq, Partition: 0, Value: []byte("dead")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// The webhook group delivered offsets 0 and 1 of partition 1: 3 records behind, the oldest
	// undelivered one is offset 2.
	var commit kadm.Offsets
	commit.AddOffset(snapshots, 1, 2, -1)
	if resp, err := adm.CommitOffsets(ctx, group, commit); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", err, resp.Error())
	}

	out, err := runStatus(t, "--config", path, "--json")
	if err != nil {
		t.Fatalf("status without thresholds: %v\n%s", err, out)
	}
	var r status.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if s := r.Slot; s == nil || !s.Exists || s.Active || s.LagBytes < 100_000 || s.ConfirmedFlushLSN == "" || s.Name != slot {
		t.Errorf("slot: %+v, want %s existing, inactive, confirmed LSN set, lag of the filler table's WAL", s, slot)
	}
	var webhookLag int64 = -1
	for _, g := range r.Groups {
		if g.Group != group {
			continue
		}
		for _, tl := range g.Topics {
			if tl.Topic == snapshots {
				webhookLag = tl.Lag
			}
		}
	}
	if webhookLag != 3 {
		t.Errorf("webhook group lag on %s = %d, want 3\n%s", snapshots, webhookLag, out)
	}
	if r.DeadLetters.Topic != dlq || r.DeadLetters.Records != 1 {
		t.Errorf("dead letters: %+v, want 1 in %s", r.DeadLetters, dlq)
	}
	if len(r.RetryBacklog) != 5 {
		t.Errorf("retry backlog lists %d tiers, want the 5 default tiers", len(r.RetryBacklog))
	}
	if len(r.DisabledSubscriptions) != 1 || r.DisabledSubscriptions[0].Reason != "gone" || r.DisabledSubscriptions[0].Tenant != "acme" {
		t.Errorf("disabled subscriptions: %+v", r.DisabledSubscriptions)
	}
	if u := r.OldestUndelivered; u == nil || u.Topic != snapshots || u.Partition != 1 || u.Offset != 2 ||
		!u.Timestamp.Equal(base.Add(2*time.Minute)) || u.AgeSeconds < 3000 {
		t.Errorf("oldest undelivered: %+v, want %s[1]@2 from %s", u, snapshots, base.Add(2*time.Minute))
	}
	if len(r.Errors) != 0 || len(r.Violations) != 0 {
		t.Errorf("errors %v violations %v, want none", r.Errors, r.Violations)
	}

	// Thresholds: each crossed one exits 2 and is named; generous ones pass (the compliance group
	// never committed, so it is 5 records behind).
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-consumer-lag", "2"}, "3 records behind on " + snapshots},
		{[]string{"--max-dlq", "0"}, "holds 1 records"},
		{[]string{"--max-slot-lag-bytes", "1000"}, "replication slot " + slot + " holds back"},
	} {
		out, err := runStatus(t, append([]string{"--config", path}, tc.args...)...)
		wantExit(t, err, 2)
		if !strings.Contains(out, "THRESHOLD: ") || !strings.Contains(out, tc.want) {
			t.Errorf("%v: output lacks %q:\n%s", tc.args, tc.want, out)
		}
	}
	out, err = runStatus(t, "--config", path, "--max-consumer-lag", "5", "--max-dlq", "1", "--max-slot-lag-bytes", "1000000000")
	if err != nil {
		t.Fatalf("generous thresholds: %v\n%s", err, out)
	}
	for _, want := range []string{"slot " + slot + ": inactive", "dead letters: 1 in " + dlq, "oldest undelivered: " + snapshots + "[1]@2", "disabled subscriptions: 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
}
