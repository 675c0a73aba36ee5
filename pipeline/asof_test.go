package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/embedkafka"
	"github.com/walhook/walhook/internal/kafkatest"
	"github.com/walhook/walhook/internal/status"
)

// noCompaction keeps the embedded broker from compacting: kfake compacts every record a later
// one superseded, whatever the topic's min.compaction.lag.ms, so history a member started behind
// needs survives only when it does not compact (Apache Kafka honours the setting).
func noCompaction() []kafkatest.Option {
	return []kafkatest.Option{kafkatest.WithOptions(embedkafka.Options{CleanerBackoff: embedkafka.NoCompaction})}
}

// The contract's story as SQL: the session is created with the incident, completed with score
// 85 in the next transaction, the incident is deleted in the third; a fourth changes the session
// again, which no version may show.
var contractStory = []string{
	`BEGIN;
	INSERT INTO session.instance (id, uuid, score, status, created_at, updated_at, tenant_id)
		VALUES (2523, '019c22ef-edc6-765d-9ab3-c2acf41b5253', NULL, 'IN_PROGRESS', '2026-02-03 09:57:55.341+00', '2026-02-03 09:57:55.341+00', 'acme');
	INSERT INTO incident.instance (id, name, status, severity, start_time, session_instance_id, created_at, created_by, updated_at, updated_by, tenant_id)
		VALUES (134, 'Face not detected', 'TRIGGERED', 'LOW', '2026-02-03 10:46:23.26+00', 2523, '2026-02-03 09:57:55.341+00', 1, '2026-02-03 09:57:55.341+00', 1, 'acme');
	COMMIT`,
	`BEGIN;
	UPDATE incident.instance SET status = 'RESOLVED', end_time = '2026-02-03 11:15:00+00',
		resolution_notes = 'Confirmed candidate was adjusting camera. No violation.', updated_at = '2026-02-03 11:15:00+00' WHERE id = 134;
	INSERT INTO incident.timeline (id, incident_instance_id, action, description, created_at, created_by, updated_at, updated_by, tenant_id)
		VALUES (1, 134, 'ESCALATED', 'Auto-escalated after 5 minutes without face detection.', '2026-02-03 10:51:23.26+00', 0, '2026-02-03 10:51:23.26+00', 0, 'acme');
	UPDATE session.instance SET status = 'COMPLETED', score = 85, updated_at = '2026-02-03 11:15:00+00' WHERE id = 2523;
	COMMIT`,
	`UPDATE incident.instance SET is_deleted = true WHERE id = 134`,
	`UPDATE session.instance SET status = 'CANCELLED', score = 0, updated_at = '2026-02-03 12:00:00+00' WHERE id = 2523`,
}

// TestContractStoryAsOf runs the contract's story as back-to-back transactions through the real
// cdc stage, once with bubble-up running and once with bubble-up started only after every
// transaction committed (it then finds every session version already in the reference topic):
// both times v1 is created with the session as created (score null, IN_PROGRESS), v2 updated
// with COMPLETED and 85, v3 deleted with COMPLETED and 85, and nothing shows the session's later
// CANCELLED state.
func TestContractStoryAsOf(t *testing.T) {
	for _, late := range []bool{false, true} {
		name := "bubble-up running"
		if late {
			name = "bubble-up started after the commits"
		}
		t.Run(name, func(t *testing.T) {
			e := startE2EWith(t, demo.ModelYAML, demo.SchemaSQL, e2eOptions{noStage: late, kafka: noCompaction()})
			for _, sql := range contractStory {
				e.exec(sql)
			}
			target := e.walLSN()
			if late {
				e.waitConfirmed(target)
				e.startStage()
			}
			snaps := e.quiescentSnapshots(e.cfg.Kafka.SnapshotTopic(e.cfg.Model.Roots[0]), target, 3, 2*time.Minute)
			checkVersions(t, snaps)
			want := []struct {
				verb      avro.Verb
				score     any
				status    string
				updatedAt string
			}{
				{avro.VerbCreated, nil, "IN_PROGRESS", "2026-02-03T09:57:55.341Z"},
				{avro.VerbUpdated, 85.0, "COMPLETED", "2026-02-03T11:15:00.000Z"},
				{avro.VerbDeleted, 85.0, "COMPLETED", "2026-02-03T11:15:00.000Z"},
			}
			if len(snaps) != len(want) {
				t.Fatalf("%d versions, want 3: %s", len(snaps), describeGot(snaps))
			}
			for i, w := range want {
				s := snaps[i]
				got := fmt.Sprintf("%s score=%v status=%v updated_at=%v", s.Verb, sessionField(t, s, "score"), sessionField(t, s, "status"), sessionField(t, s, "updated_at"))
				if exp := fmt.Sprintf("%s score=%v status=%v updated_at=%v", w.verb, w.score, w.status, w.updatedAt); got != exp {
					t.Errorf("v%d: %s, want %s\n%s", s.Version, got, exp, s.Payload)
				}
			}
			if n := inexactCount(t, e.env, e.cfg); n != 0 {
				t.Errorf("%d references recorded as inexact, want none", n)
			}
		})
	}
}

// walLSN is pg_current_wal_lsn().
func (e *e2e) walLSN() string {
	e.t.Helper()
	var lsn string
	if err := e.db.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&lsn); err != nil {
		e.t.Fatalf("pg_current_wal_lsn: %v", err)
	}
	return lsn
}

// waitConfirmed waits until the slot confirmed target: every record before it is in Kafka.
func (e *e2e) waitConfirmed(target string) {
	e.t.Helper()
	kafkatest.Eventually(e.t, 60*time.Second, func() error {
		var ok bool
		err := e.db.QueryRow(context.Background(), `SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_replication_slots WHERE slot_name = $2`,
			target, e.cfg.Postgres.Slot).Scan(&ok)
		if err == nil && !ok {
			err = fmt.Errorf("slot %s has not confirmed %s yet", e.cfg.Postgres.Slot, target)
		}
		return err
	})
}

// inexactCount is the number of records on the stage's inexact-reference topic.
func inexactCount(t testing.TB, env *kafkatest.Env, cfg *config.Config) int64 {
	t.Helper()
	return len64(inexactRecords(t, env, cfg, 0))
}

func len64[T any](s []T) int64 { return int64(len(s)) }

// inexactRecords reads the inexact-reference topic (read_committed) until it has at least want
// records, or, for want 0, to its end.
func inexactRecords(t testing.TB, env *kafkatest.Env, cfg *config.Config, want int) []inexactRecord {
	t.Helper()
	topic := cfg.InexactReferenceTopic()
	adm := kadm.NewClient(kafkatest.Client(t, env))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if want == 0 && total == 0 {
		return nil
	}
	n := max(want, 1)
	var out []inexactRecord
	for _, r := range kafkatest.ConsumeAll(t, env, topic, n, 30*time.Second, kgo.FetchIsolationLevel(kgo.ReadCommitted())) {
		var x inexactRecord
		if err := json.Unmarshal(r.Value, &x); err != nil {
			t.Fatalf("%s record %q: %v", topic, r.Value, err)
		}
		out = append(out, x)
	}
	return out
}

// TestReemitAsOf: with reemit on, every change of the session re-emits the incident with the
// session as of that change, also when the stage starts after all of them were written (the row
// changed twice before the stage handled the first change): v1 created IN_PROGRESS, v2 the
// re-emission of COMPLETED 85, v3 the incident's own update (still 85), v4 the re-emission of 99.
func TestReemitAsOf(t *testing.T) {
	for _, late := range []bool{false, true} {
		name := "running"
		if late {
			name = "started after the transactions"
		}
		t.Run(name, func(t *testing.T) {
			env := kafkatest.Start(t, noCompaction()...)
			cfg := testConfig(t, env, reemitModel(t))
			reg := testRegistry(t, env)
			c := &reemitCase{t: t, env: env, reg: reg, cdc: newFakeCDC(t, env, cfg, reg, demoTables),
				topic: cfg.Kafka.SnapshotTopic(cfg.Model.Roots[0]), want: map[string][]uint64{}}
			if !late {
				runStage(t, cfg, reg)
			}
			c.txn([]string{"134"},
				change{table: "session.instance", op: avro.OpCreate, key: "2523", after: sessionNoScore("2523", "IN_PROGRESS")},
				change{table: "incident.instance", op: avro.OpCreate, key: "134", after: incidentAt("134", "2523")})
			c.txn([]string{"134"}, change{table: "session.instance", op: avro.OpUpdate, key: "2523", after: sessionWith("2523", "COMPLETED", "85")})
			c.txn([]string{"134"}, change{table: "incident.instance", op: avro.OpUpdate, key: "134", after: incidentAt("134", "2523")})
			c.txn([]string{"134"}, change{table: "session.instance", op: avro.OpUpdate, key: "2523", after: sessionWith("2523", "COMPLETED", "99")})
			if late {
				runStage(t, cfg, reg)
			}
			c.check()
			snaps := snapshots(t, env, reg, c.topic, 4)
			want := []string{"IN_PROGRESS <nil>", "COMPLETED 85", "COMPLETED 85", "COMPLETED 99"}
			for i, s := range snaps {
				if got := fmt.Sprint(sessionField(t, s, "status"), " ", sessionField(t, s, "score")); got != want[i] {
					t.Errorf("v%d (%s at LSN %s): session %s, want %s", s.Version, s.Verb, lsnText(s.CommitLSN), got, want[i])
				}
			}
		})
	}
}

// sessionNoScore is a session row whose score is null.
func sessionNoScore(id, status string) map[string]string {
	m := sessionWith(id, status, "")
	delete(m, "score")
	return m
}

// TestReferenceHistoryBeyondBound: a member that starts after the broker compacted away the
// session versions its snapshot needs shows the newest version it has and reports it (metric,
// inexact-reference topic with root, reference and LSN); with reference_history_exceeded: stop it
// stops with an error naming the setting to raise. (kfake compacts on demand; Apache Kafka keeps
// the versions for min.compaction.lag.ms, so there is nothing to force.)
func TestReferenceHistoryBeyondBound(t *testing.T) {
	env := kafkatest.Start(t, noCompaction()...)
	cluster := env.RequireCluster(t)
	cfg := testConfig(t, env, demoModel)
	reg := testRegistry(t, env)
	cdc := newFakeCDC(t, env, cfg, reg, demoTables)
	first := cdc.txn(change{table: "session.instance", op: avro.OpCreate, key: "2523", after: sessionNoScore("2523", "IN_PROGRESS")},
		change{table: "incident.instance", op: avro.OpCreate, key: "134", after: incidentAt("134", "2523")})
	cdc.txn(change{table: "session.instance", op: avro.OpUpdate, key: "2523", after: sessionWith("2523", "COMPLETED", "85")})
	cdc.txn(change{table: "session.instance", op: avro.OpUpdate, key: "2523", after: sessionWith("2523", "CANCELLED", "0")})
	cluster.Compact() // the session's first version is superseded: gone

	stopCfg := *cfg
	stopCfg.BubbleUp.ReferenceHistoryExceeded = config.ReferenceHistoryStop
	s, err := New(&stopCfg, WithRegistry(reg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = s.Run(ctx)
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "bubbleup.reference_history") ||
		!strings.Contains(err.Error(), lsnText(first)) || !strings.Contains(err.Error(), `"2523"`) {
		t.Fatalf("with reference_history_exceeded: stop, Run returned %v; want an error naming the root, the reference, LSN %s and bubbleup.reference_history", err, lsnText(first))
	}
	t.Logf("stopped as configured: %v", err)

	promReg := prometheus.NewRegistry()
	runStage(t, cfg, reg, WithRegisterer(promReg))
	snaps := snapshots(t, env, reg, cfg.Kafka.SnapshotTopic(cfg.Model.Roots[0]), 1)
	if st := sessionField(t, snaps[0], "status"); st != "CANCELLED" {
		t.Fatalf("v1 beyond the history shows session status %v, want the newest version's CANCELLED", st)
	}
	recs := inexactRecords(t, env, cfg, 1)
	if len(recs) != 1 || recs[0].Key != "134" || recs[0].Reference != "session" || recs[0].RefKey != "2523" ||
		recs[0].CommitLSN != lsnText(first) || recs[0].Reason != inexactHistory || recs[0].Version != 1 {
		t.Fatalf("inexact-reference records %+v, want one for root 134 v1 at LSN %s, session 2523, %s", recs, lsnText(first), inexactHistory)
	}
	var got float64
	kafkatest.Eventually(t, 10*time.Second, func() error {
		mfs, err := promReg.Gather()
		if err != nil {
			return err
		}
		for _, mf := range mfs {
			if mf.GetName() == "walhook_bubbleup_reference_inexact_total" {
				got = mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		if got != 1 {
			return fmt.Errorf("walhook_bubbleup_reference_inexact_total %v, want 1", got)
		}
		return nil
	})
	rep, err := status.Collect(context.Background(), cfg, status.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if rep.InexactReferences.Records == 0 || rep.InexactReferences.Topic != cfg.InexactReferenceTopic() {
		t.Fatalf("walhook status shows inexact references %+v, want some in %s", rep.InexactReferences, cfg.InexactReferenceTopic())
	}
	var m dto.Metric
	if err := s.metrics.refInexact.WithLabelValues("incident.instance", "session", inexactHistory).Write(&m); err != nil {
		t.Fatal(err)
	}
	if v := m.GetCounter().GetValue(); v != 0 {
		t.Fatalf("the stopped stage counted %v inexact references, want 0", v)
	}
}

// TestReferenceTopicHistoryConfig: the stage raises a reference topic's min.compaction.lag.ms
// that is below bubbleup.reference_history.
func TestReferenceTopicHistoryConfig(t *testing.T) {
	env := kafkatest.Start(t)
	cfg := testConfig(t, env, demoModel)
	cfg.BubbleUp.ReferenceHistory = 3 * time.Hour
	reg := testRegistry(t, env)
	topic := cfg.Kafka.ReferenceTopic("session.instance")
	adm := kadm.NewClient(kafkatest.Client(t, env))
	ctx := context.Background()
	resp, err := adm.CreateTopic(ctx, 3, -1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact"), minCompactionLag: kadm.StringPtr("1000")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
	cdc := newFakeCDC(t, env, cfg, reg, demoTables)
	runStage(t, cfg, reg)
	cdc.txn(change{table: "session.instance", op: avro.OpCreate, key: "2523", after: seedSession()},
		change{table: "incident.instance", op: avro.OpCreate, key: "134", after: incidentAt("134", "2523")})
	snapshots(t, env, reg, cfg.Kafka.SnapshotTopic(cfg.Model.Roots[0]), 1) // the stage is up
	kafkatest.Eventually(t, 30*time.Second, func() error {
		rcs, err := adm.DescribeTopicConfigs(ctx, topic)
		if err != nil {
			return err
		}
		for _, rc := range rcs {
			for _, c := range rc.Configs {
				if c.Key == minCompactionLag && c.MaybeValue() == "10800000" {
					return nil
				}
			}
		}
		return fmt.Errorf("%s: %s not raised to 10800000 (3h) yet", topic, minCompactionLag)
	})
}
