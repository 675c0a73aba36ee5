package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/kafkatest"
)

func TestTailDecodesEveryFraming(t *testing.T) {
	env := kafkatest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topic := kafkatest.CreateTopic(t, env, "tail", 1, nil)
	schemaTopic := kafkatest.CreateTopic(t, env, "schemas", 1, nil)
	cl := kafkatest.Client(t, env)
	src, err := sr.NewClient(sr.URLs(env.RegistryURL))
	if err != nil {
		t.Fatal(err)
	}
	snapSchema, _ := avro.ParseSchema(avro.SnapshotSchema())
	confluent, err := avro.NewConfluentRegistry(src).Prefix(ctx, topic, snapSchema)
	if err != nil {
		t.Fatal(err)
	}
	endSchema, _ := avro.ParseSchema(avro.TxnEndSchema())
	single, err := avro.NewTopicRegistry(cl, schemaTopic).Prefix(ctx, topic, endSchema)
	if err != nil {
		t.Fatal(err)
	}
	snap := avro.Snapshot{RootType: "incident.instance", EventPrefix: "incident.instance", Key: "134", Tenant: "t",
		EventType: "incident_instance_created", Verb: avro.VerbCreated, Version: 1, CommitTime: time.Unix(1, 0), Payload: []byte(`{"id":134}`)}
	end := avro.TxnEnd{Table: "incident.instance", RootKey: "134", CommitLSN: 7, CommitTime: time.Unix(2, 0), Rows: 3}
	recs := []*kgo.Record{
		{Topic: topic, Key: []byte("134"), Value: avro.AppendSnapshot(append([]byte(nil), confluent...), snap),
			Headers: []kgo.RecordHeader{{Key: "walhook-version", Value: []byte("1")}}},
		{Topic: topic, Key: []byte("134"), Value: avro.AppendTxnEnd(append([]byte(nil), single...), end)},
		{Topic: topic, Value: []byte(`{"plain":true}`)},
		{Topic: topic, Key: []byte("134")},
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	cmd := newTailCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--topic", topic, "--from-beginning", "--brokers", strings.Join(env.Brokers, ","),
		"--registry", env.RegistryURL, "--schema-topic", schemaTopic, "--max", "4"})
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Fatalf("tail: %v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4:\n%s", len(lines), out.String())
	}
	var got []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", l, err)
		}
		if m["error"] != nil {
			t.Fatalf("line %q has an error", l)
		}
		got = append(got, m)
	}
	want := []struct{ encoding, schema, probe string }{
		{"confluent", "walhook.Snapshot", `"payload":{"id":134}`},
		{"single-object", "walhook.TxnEnd", `"rows":3`},
		{"json", "", `"value":{"plain":true}`},
		{"tombstone", "", `"value":null`},
	}
	for i, w := range want {
		if got[i]["encoding"] != w.encoding || (w.schema != "" && got[i]["schema"] != w.schema) || !strings.Contains(lines[i], w.probe) {
			t.Errorf("line %d = %s; want encoding %s schema %q containing %s", i, lines[i], w.encoding, w.schema, w.probe)
		}
	}
	if got[0]["key"] != "134" || got[0]["headers"].(map[string]any)["walhook-version"] != "1" || got[2]["key"] != nil {
		t.Errorf("keys/headers wrong: %s / %s", lines[0], lines[2])
	}
}
