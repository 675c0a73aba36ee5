package embedkafka_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/walhook/walhook/internal/embedkafka"
	"github.com/walhook/walhook/internal/kafkatest"
)

const wait = 20 * time.Second

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

func produce(t *testing.T, cl *kgo.Client, topic string, kvs ...string) {
	t.Helper()
	for i := 0; i+1 < len(kvs); i += 2 {
		// One ProduceSync per record gives one batch per record, which
		// compaction relies on (kfake never compacts the last batch).
		r := &kgo.Record{Topic: topic, Key: []byte(kvs[i]), Value: []byte(kvs[i+1])}
		if err := cl.ProduceSync(ctxT(t), r).FirstErr(); err != nil {
			t.Fatalf("produce %s=%s to %s: %v", kvs[i], kvs[i+1], topic, err)
		}
	}
}

func values(recs []*kgo.Record) []string {
	var vs []string
	for _, r := range recs {
		vs = append(vs, string(r.Value))
	}
	return vs
}

func equal(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestProduceConsumeOverTCP(t *testing.T) {
	t.Parallel()
	env := kafkatest.Start(t)
	topic := kafkatest.CreateTopic(t, env, "pc", 3, nil)
	produce(t, kafkatest.Client(t, env), topic, "a", "1", "b", "2", "c", "3")
	recs := kafkatest.ConsumeAll(t, env, topic, 3, wait)
	if len(recs) != 3 {
		t.Fatalf("got %d records %v, want 3", len(recs), values(recs))
	}
}

func TestTransactionsReadCommitted(t *testing.T) {
	t.Parallel()
	env := kafkatest.Start(t)
	topic := kafkatest.CreateTopic(t, env, "txn", 1, nil)
	cl := kafkatest.Client(t, env, kgo.TransactionalID(kafkatest.TxnID(t, "txn")), kgo.DefaultProduceTopic(topic))
	for _, tx := range []struct {
		value  string
		commit kgo.TransactionEndTry
	}{{"c1", kgo.TryCommit}, {"a1", kgo.TryAbort}, {"c2", kgo.TryCommit}} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatalf("begin transaction: %v", err)
		}
		if err := cl.ProduceSync(ctxT(t), kgo.StringRecord(tx.value)).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", tx.value, err)
		}
		if err := cl.EndTransaction(ctxT(t), tx.commit); err != nil {
			t.Fatalf("end transaction of %s: %v", tx.value, err)
		}
	}
	// c2 follows a1, so a read_committed consumer that had seen a1 would
	// return it before c2.
	got := values(kafkatest.ConsumeAll(t, env, topic, 2, wait, kgo.FetchIsolationLevel(kgo.ReadCommitted())))
	if !equal(got, []string{"c1", "c2"}) {
		t.Fatalf("read_committed got %v, want [c1 c2]", got)
	}
	got = values(kafkatest.ConsumeAll(t, env, topic, 3, wait, kgo.FetchIsolationLevel(kgo.ReadUncommitted())))
	if !equal(got, []string{"c1", "a1", "c2"}) {
		t.Fatalf("read_uncommitted got %v, want [c1 a1 c2]", got)
	}
}

// consumeGroup joins group, reads n records, commits them and leaves.
func consumeGroup(t *testing.T, env *kafkatest.Env, topic, group string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(), kgo.FetchMaxWait(250*time.Millisecond))
	if err != nil {
		t.Fatalf("group client: %v", err)
	}
	defer cl.Close()
	recs := kafkatest.Poll(t, cl, n, wait)
	if err := cl.CommitRecords(ctxT(t), recs...); err != nil {
		t.Fatalf("commit %d records of group %s: %v", len(recs), group, err)
	}
	return recs
}

func TestConsumerGroupResumesAfterCommit(t *testing.T) {
	t.Parallel()
	env := kafkatest.Start(t)
	topic := kafkatest.CreateTopic(t, env, "grp", 1, nil)
	group := kafkatest.GroupName(t, "grp")
	cl := kafkatest.Client(t, env)
	produce(t, cl, topic, "k", "1", "k", "2", "k", "3")
	if got := values(consumeGroup(t, env, topic, group, 3)); !equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("first member got %v", got)
	}
	produce(t, cl, topic, "k", "4", "k", "5")
	if got := values(consumeGroup(t, env, topic, group, 2)); !equal(got, []string{"4", "5"}) {
		t.Fatalf("second member got %v, want [4 5]: it did not resume after the committed offset", got)
	}
}

// readAll reads a one-partition topic from its start to its high watermark
// with a fresh client, returning errors instead of failing so it can run
// inside Eventually.
func readAll(env *kafkatest.Env, topic string) ([]*kgo.Record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	end, _ := ends.Lookup(topic, 0)
	var recs []*kgo.Record
	for len(recs) == 0 || recs[len(recs)-1].Offset < end.Offset-1 {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			return recs, err
		}
		recs = append(recs, fs.Records()...)
	}
	return recs, nil
}

func TestCompactionByBrokerConfig(t *testing.T) {
	t.Parallel()
	env := kafkatest.Start(t)
	compact := "compact"
	topic := kafkatest.CreateTopic(t, env, "compact", 1, map[string]*string{"cleanup.policy": &compact})
	produce(t, kafkatest.Client(t, env), topic, "k", "old1", "k", "old2", "j", "1", "k", "new", "last", "x")
	start := time.Now()
	// No Compact() call: only the broker's log.cleaner.backoff.ms ticker.
	kafkatest.Eventually(t, embedkafka.CleanerBackoff*10, func() error {
		recs, err := readAll(env, topic)
		if err != nil {
			return err
		}
		if got := values(recs); !equal(got, []string{"1", "new", "x"}) {
			return fmt.Errorf("topic holds %v, want [1 new x] after compaction", got)
		}
		return nil
	})
	t.Logf("compacted by the broker's cleaner within %v", time.Since(start).Round(10*time.Millisecond))
}

func TestNoCompaction(t *testing.T) {
	t.Parallel()
	env := kafkatest.Start(t, kafkatest.WithOptions(embedkafka.Options{CleanerBackoff: embedkafka.NoCompaction}))
	env.RequireCluster(t)
	compact := "compact"
	topic := kafkatest.CreateTopic(t, env, "compact", 1, map[string]*string{"cleanup.policy": &compact})
	produce(t, kafkatest.Client(t, env), topic, "k", "old", "k", "new", "last", "x")
	time.Sleep(5 * embedkafka.CleanerBackoff)
	recs, err := readAll(env, topic)
	if err != nil {
		t.Fatal(err)
	}
	if got := values(recs); !equal(got, []string{"old", "new", "x"}) {
		t.Fatalf("with NoCompaction the topic holds %v, want [old new x]", got)
	}
}

func TestCompactOnDemand(t *testing.T) {
	t.Parallel()
	env := kafkatest.Start(t)
	cluster := env.RequireCluster(t)
	compact := "compact"
	topic := kafkatest.CreateTopic(t, env, "compact", 1, map[string]*string{"cleanup.policy": &compact})
	produce(t, kafkatest.Client(t, env), topic, "k", "old", "k", "new", "last", "x")
	cluster.Compact()
	recs, err := readAll(env, topic)
	if err != nil {
		t.Fatal(err)
	}
	if got := values(recs); !equal(got, []string{"new", "x"}) {
		t.Fatalf("after Compact topic holds %v, want [new x]", got)
	}
}

const avroV1 = `{"type":"record","name":"Incident","fields":[{"name":"id","type":"string"}]}`
const avroV2 = `{"type":"record","name":"Incident","fields":[{"name":"id","type":"string"},{"name":"n","type":"int","default":0}]}`

func TestRegistryOverHTTP(t *testing.T) {
	t.Parallel()
	env := kafkatest.Start(t)
	rcl, err := sr.NewClient(sr.URLs(env.RegistryURL))
	if err != nil {
		t.Fatal(err)
	}
	subject := kafkatest.TopicName(t, "incident") + "-value"
	ss, err := rcl.CreateSchema(ctxT(t), subject, sr.Schema{Schema: avroV1, Type: sr.TypeAvro})
	if err != nil {
		t.Fatalf("register schema at %s: %v", env.RegistryURL, err)
	}
	got, err := rcl.SchemaByID(ctxT(t), ss.ID)
	if err != nil {
		t.Fatalf("fetch schema id %d: %v", ss.ID, err)
	}
	if got.Schema != avroV1 {
		t.Fatalf("schema id %d is %q, want %q", ss.ID, got.Schema, avroV1)
	}
}

func TestRegistryDisabled(t *testing.T) {
	t.Parallel()
	s, err := embedkafka.Start(context.Background(), embedkafka.Options{RegistryPort: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if u := s.RegistryURL(); u != "" {
		t.Fatalf("RegistryURL() = %q with RegistryPort -1, want empty", u)
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	t.Parallel()
	s, err := embedkafka.Start(context.Background(), embedkafka.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	t.Parallel()
	_, err := embedkafka.Start(context.Background(), embedkafka.Options{Port: -2, RegistryPort: -5, Partitions: -1})
	if err == nil {
		t.Fatal("Start accepted Port -2, RegistryPort -5, Partitions -1")
	}
	t.Log(err)
}

func TestStartupTime(t *testing.T) {
	for _, dir := range []string{"", t.TempDir()} {
		start := time.Now()
		s, err := embedkafka.Start(context.Background(), embedkafka.Options{DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		up := time.Since(start)
		start = time.Now()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("data dir %q: start %v, close %v", dir, up, time.Since(start))
	}
}

func TestRestartKeepsTopicsRecordsOffsetsAndSchemas(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func() (*embedkafka.Stack, *kafkatest.Env) {
		t.Helper()
		s, err := embedkafka.Start(context.Background(), embedkafka.Options{DataDir: dir})
		if err != nil {
			t.Fatalf("start on %s: %v", dir, err)
		}
		t.Cleanup(func() { s.Close() })
		return s, &kafkatest.Env{Brokers: s.Brokers(), RegistryURL: s.RegistryURL(), Cluster: s.Cluster(), Stack: s}
	}

	s1, env := start()
	topic := kafkatest.CreateTopic(t, env, "persist", 2, nil)
	group := kafkatest.GroupName(t, "persist")
	cl := kafkatest.Client(t, env)
	produce(t, cl, topic, "a", "1", "b", "2", "c", "3")
	consumeGroup(t, env, topic, group, 3)
	produce(t, cl, topic, "d", "4", "e", "5")
	rcl, _ := sr.NewClient(sr.URLs(env.RegistryURL))
	subject := topic + "-value"
	v1, err := rcl.CreateSchema(ctxT(t), subject, sr.Schema{Schema: avroV1, Type: sr.TypeAvro})
	if err != nil {
		t.Fatal(err)
	}
	// The same schema under a second subject shares its id.
	other, err := rcl.CreateSchema(ctxT(t), "other-value", sr.Schema{Schema: avroV1, Type: sr.TypeAvro})
	if err != nil || other.ID != v1.ID {
		t.Fatalf("second subject got id %d (err %v), want shared id %d", other.ID, err, v1.ID)
	}
	cl.Close()
	if err := s1.Close(); err != nil {
		t.Fatalf("close before restart: %v", err)
	}

	_, env = start()
	if got := kafkatest.ConsumeAll(t, env, topic, 5, wait); len(got) != 5 {
		t.Fatalf("after restart topic %s holds %v, want 5 records", topic, values(got))
	}
	got := consumeGroup(t, env, topic, group, 2)
	if vs := values(got); len(vs) != 2 || !(equal(vs, []string{"4", "5"}) || equal(vs, []string{"5", "4"})) {
		t.Fatalf("group %s after restart got %v, want [4 5]: committed offsets were lost", group, vs)
	}

	rcl, _ = sr.NewClient(sr.URLs(env.RegistryURL))
	old, err := rcl.SchemaByID(ctxT(t), v1.ID)
	if err != nil || old.Schema != avroV1 {
		t.Fatalf("schema id %d after restart: %q, %v; want the schema registered before", v1.ID, old.Schema, err)
	}
	if ss, err := rcl.SchemaByVersion(ctxT(t), "other-value", 1); err != nil || ss.ID != v1.ID {
		t.Fatalf("other-value v1 after restart: id %d, %v; want id %d", ss.ID, err, v1.ID)
	}
	v2, err := rcl.CreateSchema(ctxT(t), subject, sr.Schema{Schema: avroV2, Type: sr.TypeAvro})
	if err != nil {
		t.Fatal(err)
	}
	if v2.ID == v1.ID || v2.Version != 2 {
		t.Fatalf("new schema after restart got id %d version %d; want a fresh id and version 2", v2.ID, v2.Version)
	}
}

func TestStartFailsOnBusyPort(t *testing.T) {
	t.Parallel()
	env := kafkatest.Start(t, kafkatest.Embedded())
	_, portStr, _ := net.SplitHostPort(env.Brokers[0])
	port, _ := strconv.Atoi(portStr)
	_, err := embedkafka.Start(context.Background(), embedkafka.Options{Port: port})
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Fatalf("second broker on busy port %d: got %v, want a wrapped *net.OpError", port, err)
	}
	t.Log(err)
}
