package avro

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"github.com/walhook/walhook/internal/kafkatest"
)

func TestConfluentRegistry(t *testing.T) {
	fake := srfake.New()
	t.Cleanup(fake.Close)
	var registrations atomic.Int32
	fake.Intercept(func(_ http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/versions") {
			registrations.Add(1)
		}
		return false
	})
	client, err := sr.NewClient(sr.URLs(fake.URL()))
	if err != nil {
		t.Fatal(err)
	}
	writer, reader := NewConfluentRegistry(client), NewConfluentRegistry(client)
	s, _ := NewChangeSchema(incidentTable())
	ctx := context.Background()

	var wg sync.WaitGroup
	prefixes := make([][]byte, 8)
	errs := make([]error, 8)
	for i := range prefixes {
		wg.Go(func() { prefixes[i], errs[i] = writer.Prefix(ctx, "walhook.changes", s.Schema()) })
	}
	wg.Wait()
	for i := range prefixes {
		if errs[i] != nil || !bytes.Equal(prefixes[i], prefixes[0]) {
			t.Fatalf("prefix %d: %x %v", i, prefixes[i], errs[i])
		}
	}
	if n := registrations.Load(); n != 1 {
		t.Errorf("%d registrations, want 1", n)
	}
	if _, ok := fake.GetSchema("walhook.changes-walhook.incident.instance.Change", 1); !ok {
		t.Error("subject not TopicRecordNameStrategy")
	}
	body, _ := s.AppendChange(nil, ChangeHeader{Op: OpCreate}, nil, incidentRow())
	value := append(append([]byte(nil), prefixes[0]...), body...)
	text, gotBody, err := reader.Resolve(ctx, value)
	if err != nil || text != s.JSON() || !bytes.Equal(gotBody, body) {
		t.Fatalf("Resolve: %v", err)
	}
	if _, _, err := reader.Resolve(ctx, []byte{0, 0, 0, 0, 99}); !errors.Is(err, ErrUnknownSchema) {
		t.Errorf("unknown id: %v", err)
	}
	if _, _, err := reader.Resolve(ctx, []byte{0xC3, 1}); !errors.Is(err, ErrNotFramed) {
		t.Errorf("bad framing: %v", err)
	}
}

func TestConfluentRegistryIncompatible(t *testing.T) {
	fake := srfake.New()
	t.Cleanup(fake.Close)
	fake.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPost {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		w.Write([]byte(`{"error_code":409,"message":"Schema being registered is incompatible with an earlier schema"}`))
		return true
	})
	client, _ := sr.NewClient(sr.URLs(fake.URL()))
	s, _ := NewChangeSchema(incidentTable())
	_, err := NewConfluentRegistry(client).Prefix(context.Background(), "t", s.Schema())
	if err == nil || !strings.Contains(err.Error(), `"t-walhook.incident.instance.Change"`) || !strings.Contains(err.Error(), "compatibility") {
		t.Fatalf("error does not name subject and fix: %v", err)
	}
	var re *sr.ResponseError
	if !errors.As(err, &re) {
		t.Errorf("registry error not wrapped: %v", err)
	}
}

func TestTopicRegistry(t *testing.T) {
	env := kafkatest.Start(t)
	ctx := context.Background()
	topic := kafkatest.TopicName(t, "schemas")
	cl := kafkatest.Client(t, env)
	if err := CreateSchemaTopic(ctx, cl, topic, 1); err != nil {
		t.Fatal(err)
	}
	if err := CreateSchemaTopic(ctx, cl, topic, 1); err != nil {
		t.Fatalf("existing topic: %v", err)
	}
	s, _ := NewChangeSchema(incidentTable())
	writer := NewTopicRegistry(cl, topic)
	p1, err := writer.Prefix(ctx, "changes", s.Schema())
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := writer.Prefix(ctx, "other", s.Schema())
	if !bytes.Equal(p1, p2) || !bytes.Equal(p1, SingleObjectPrefix(s.Fingerprint())) {
		t.Fatalf("prefixes %x %x", p1, p2)
	}
	te, _ := ParseSchema(TxnEndSchema())
	if _, err := writer.Prefix(ctx, "changes", te); err != nil {
		t.Fatal(err)
	}
	recs := kafkatest.ConsumeAll(t, env, topic, 2, defaultTimeout)
	if string(recs[0].Key) != fingerprintKey(s.Fingerprint()) || string(recs[0].Value) != s.JSON() {
		t.Errorf("schema record %s", recs[0].Key)
	}

	reader := NewTopicRegistry(kafkatest.Client(t, env), topic)
	body := AppendTxnEnd(nil, TxnEnd{Table: "incident.instance", RootKey: "1"})
	text, got, err := reader.Resolve(ctx, append(SingleObjectPrefix(te.Fingerprint), body...))
	if err != nil || text != TxnEndSchema() || !bytes.Equal(got, body) {
		t.Fatalf("Resolve: %q %v", text, err)
	}
	if _, _, err := reader.Resolve(ctx, SingleObjectPrefix(42)); !errors.Is(err, ErrUnknownSchema) {
		t.Errorf("unknown fingerprint: %v", err)
	}
}

const defaultTimeout = 10 * time.Second

func TestTopicRegistryCollision(t *testing.T) {
	env := kafkatest.Start(t)
	ctx := context.Background()
	topic := kafkatest.TopicName(t, "schemas")
	cl := kafkatest.Client(t, env)
	if err := CreateSchemaTopic(ctx, cl, topic, 1); err != nil {
		t.Fatal(err)
	}
	v1, _ := NewChangeSchema(Table{Schema: "s", Name: "t", Columns: []Column{numericCol("amount", 10, 2)}})
	v2, _ := NewChangeSchema(Table{Schema: "s", Name: "t", Columns: []Column{numericCol("amount", 12, 4)}})
	if v1.Fingerprint() != v2.Fingerprint() {
		t.Fatal("expected canonical forms to collide")
	}
	if _, err := NewTopicRegistry(cl, topic).Prefix(ctx, "c", v1.Schema()); err != nil {
		t.Fatal(err)
	}
	// A restarted writer republishes nothing for a known schema...
	if _, err := NewTopicRegistry(cl, topic).Prefix(ctx, "c", v1.Schema()); err != nil {
		t.Fatal(err)
	}
	if n := len(kafkatest.ConsumeAll(t, env, topic, 1, defaultTimeout)); n != 1 {
		t.Errorf("%d schema records, want 1", n)
	}
	// ...and refuses a different schema under the same fingerprint.
	if _, err := NewTopicRegistry(cl, topic).Prefix(ctx, "c", v2.Schema()); !errors.Is(err, ErrFingerprintCollision) {
		t.Errorf("collision: %v", err)
	}
}

func TestTopicRegistryMissingTopic(t *testing.T) {
	env := kafkatest.Start(t)
	s, _ := NewChangeSchema(incidentTable())
	_, err := NewTopicRegistry(kafkatest.Client(t, env), "no-such-topic").Prefix(context.Background(), "c", s.Schema())
	if err == nil || !strings.Contains(err.Error(), "CreateSchemaTopic") {
		t.Errorf("missing topic: %v", err)
	}
}
