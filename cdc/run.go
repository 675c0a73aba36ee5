package cdc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/kafkaconn"
)

// shutdownTimeout bounds the final flush to Kafka when Run stops.
const shutdownTimeout = 10 * time.Second

// slotActiveWait bounds how long START_REPLICATION is retried while the slot is still active
// for a previous reader's walsender that has not noticed its client is gone.
const slotActiveWait = 60 * time.Second

// Run takes the slot's lock (waiting as a standby while another process holds it), checks and
// prepares PostgreSQL and Kafka, then streams until ctx is done or a fatal error. Every
// goroutine it started has returned when it returns. ctx's cancellation is a clean stop (nil).
func (s *Stage) Run(ctx context.Context) error {
	s.runMu.Lock()
	if s.running {
		s.runMu.Unlock()
		return errors.New("cdc: Run called twice on one Stage")
	}
	s.running = true
	s.runMu.Unlock()
	defer func() { s.runMu.Lock(); s.running = false; s.runMu.Unlock() }()

	lockConn, err := s.acquireLock(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer func() { _ = lockConn.Close(context.Background()) }()
	s.log.Info("active reader of the slot", zap.String("slot", s.cfg.Postgres.Slot))

	hbCtx, hbCancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	hbErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.heartbeat(hbCtx, lockConn); err != nil {
			hbErr <- err
			hbCancel()
		}
	}()
	err = s.stream(hbCtx)
	hbCancel()
	wg.Wait()
	select {
	case e := <-hbErr:
		err = errors.Join(err, e)
	default:
	}
	if ctx.Err() != nil && err != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return backoffRefused(ctx, s.log, s.refusedWait, err)
}

// stream prepares everything and runs the replication loop.
func (s *Stage) stream(ctx context.Context) (err error) {
	cat, err := pgx.Connect(ctx, s.cfg.Postgres.URL)
	if err != nil {
		return fmt.Errorf("cdc: connect to PostgreSQL: %w; check postgres.url / WALHOOK_PG_URL", err)
	}
	defer func() { _ = cat.Close(context.Background()) }()
	if err := s.preparePostgres(ctx, cat); err != nil {
		return err
	}

	st, err := newStreamer(s)
	if err != nil {
		return err
	}
	cl, err := s.newProducer(st.manual)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := s.prepareKafka(ctx, cl, adm, st); err != nil {
		return err
	}

	var database string
	if err := cat.QueryRow(ctx, `SELECT current_database()`).Scan(&database); err != nil {
		return fmt.Errorf("cdc: current database: %w", err)
	}
	repl, err := s.connectReplication(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = repl.Close(context.Background()) }()
	start, err := s.prepareSlot(ctx, cat, repl, cl, adm, database)
	if err != nil {
		return err
	}

	st.repl, st.cl = repl, cl
	st.cat = &catalog{conn: cat, types: map[uint32]typeInfo{}}
	st.tr = newTracker(start)
	st.ix = newKeyIndex(&s.cfg.Model)
	if st.ix.needed() {
		if err := s.readCompacted(ctx, adm, s.indexTopic(), st.ix.load); err != nil {
			return fmt.Errorf("cdc: load key index: %w", err)
		}
	}
	dir := s.cfg.CDC.SpillDir
	if dir == "" {
		dir = defaultSpillDir(s.cfg.Postgres.Slot)
	}
	st.spill = newSpillBuffers(dir, s.memoryLimit(), s.metrics.spill)
	defer func() { err = errors.Join(err, st.spill.closeAll()) }()
	state := &stateSaver{s: s, cl: cl, database: database}
	st.onConfirm = state.confirmed

	sn, err := s.newSnapshotter(ctx, adm, cl, st.tr)
	if err != nil {
		return err
	}
	st.snap = sn
	if err := s.startReplication(ctx, repl, start); err != nil {
		return err
	}
	s.log.Info("streaming", zap.String("slot", s.cfg.Postgres.Slot), zap.Stringer("from", start),
		zap.String("publication", s.cfg.Postgres.Publication))
	runErr := sn.run(ctx, st.run)
	return errors.Join(runErr, s.shutdown(st, state))
}

// shutdown flushes what Kafka still holds, confirms it, and records the state.
func (s *Stage) shutdown(st *streamer, state *stateSaver) error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := st.cl.Flush(ctx); err != nil {
		s.log.Warn("stopping with records not acknowledged by Kafka; they are read again from the slot on restart", zap.Error(err))
	}
	confirmed, _ := st.tr.state()
	if err := st.sendStatus(true); err != nil {
		s.log.Debug("final standby status not sent", zap.Error(err))
	}
	state.save(ctx, confirmed, true)
	s.log.Info("stopped", zap.String("slot", s.cfg.Postgres.Slot), zap.Stringer("confirmed", confirmed))
	return nil
}

func (s *Stage) memoryLimit() int64 {
	if s.cfg.CDC.MemoryLimitBytes > 0 {
		return s.cfg.CDC.MemoryLimitBytes
	}
	return 64 << 20
}

// preparePostgres checks wal_level, the tables, the publication and replica identities.
func (s *Stage) preparePostgres(ctx context.Context, cat *pgx.Conn) error {
	if err := checkWALLevel(ctx, cat); err != nil {
		return err
	}
	tables := s.cfg.Model.Tables()
	if err := checkTables(ctx, cat, tables); err != nil {
		return err
	}
	if err := ensurePublication(ctx, cat, s.cfg.Postgres.Publication, tables, s.log); err != nil {
		return err
	}
	return ensureReplicaIdentity(ctx, cat, s.identityNeeds(), s.cfg.CDC.ManageReplicaIdentity, s.log)
}

// prepareKafka checks the brokers, creates the topics and builds the default registry.
func (s *Stage) prepareKafka(ctx context.Context, cl *kgo.Client, adm *kadm.Client, st *streamer) error {
	k := s.cfg.Kafka
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := kafkaconn.Ping(pctx, cl, k.Brokers); err != nil {
		return err
	}
	compact := map[string]string{"cleanup.policy": "compact"}
	keep := map[string]string{"cleanup.policy": "delete"}
	var specs []kafkaconn.TopicSpec
	for _, r := range s.cfg.Model.Roots {
		specs = append(specs, kafkaconn.TopicSpec{Name: k.ChangeTopic(r), Partitions: k.Partitions, ReplicationFactor: k.ReplicationFactor, Configs: keep})
	}
	for _, t := range st.refTopics { // compacted, keeping bubbleup.reference_history of versions
		specs = append(specs, kafkaconn.TopicSpec{Name: t, Partitions: k.Partitions, ReplicationFactor: k.ReplicationFactor, Configs: s.cfg.ReferenceTopicConfigs()})
	}
	specs = append(specs,
		kafkaconn.TopicSpec{Name: s.stateTopic(), Partitions: 1, ReplicationFactor: k.ReplicationFactor, Configs: compact},
		kafkaconn.TopicSpec{Name: s.indexTopic(), Partitions: k.Partitions, ReplicationFactor: k.ReplicationFactor, Configs: compact})
	if s.registry == nil && s.cfg.SchemaRegistry.URL == "" {
		specs = append(specs, kafkaconn.TopicSpec{Name: s.schemaTopic(), Partitions: 1, ReplicationFactor: k.ReplicationFactor, Configs: compact})
	}
	if err := kafkaconn.EnsureTopics(ctx, adm, kafkaconn.WithRecordLimits(k, specs)); err != nil {
		return err
	}
	if err := s.topicPartitionCounts(ctx, cl, st); err != nil {
		return err
	}
	reg, err := s.defaultRegistry(cl)
	if err != nil {
		return err
	}
	st.reg = reg
	return nil
}

// schemaTopic holds the Avro schemas when no schema registry is configured.
func (s *Stage) schemaTopic() string { return kafkaconn.SchemaTopic(s.cfg.Kafka) }

func (s *Stage) defaultRegistry(cl *kgo.Client) (avro.Registry, error) {
	if s.registry != nil {
		return s.registry, nil
	}
	return kafkaconn.AvroRegistry(s.cfg, cl)
}

// connectReplication opens the replication connection. The session settings make pgoutput's
// text values unambiguous: timestamps in UTC ISO, intervals ISO 8601, floats exact.
func (s *Stage) connectReplication(ctx context.Context) (*pgconn.PgConn, error) {
	pc, err := pgconn.ParseConfig(s.cfg.Postgres.URL)
	if err != nil {
		return nil, fmt.Errorf("cdc: postgres.url: %w", err)
	}
	for k, v := range map[string]string{
		"replication": "database", "TimeZone": "UTC", "DateStyle": "ISO",
		"IntervalStyle": "iso_8601", "extra_float_digits": "3", "application_name": "walhook-cdc",
	} {
		pc.RuntimeParams[k] = v
	}
	pc.BuildFrontend = batchedFrontend // readbatch.go
	conn, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("cdc: open replication connection: %w; the user needs the REPLICATION attribute "+
			"and pg_hba.conf must allow it", err)
	}
	return conn, nil
}

// prepareSlot reuses or creates the slot and returns the LSN streaming starts from. A slot
// missing now but recorded in the state topic is an error (lostSlotError), never recreated.
func (s *Stage) prepareSlot(ctx context.Context, cat *pgx.Conn, repl *pgconn.PgConn, cl *kgo.Client, adm *kadm.Client, database string) (pglogrepl.LSN, error) {
	slot := s.cfg.Postgres.Slot
	state, err := s.loadState(ctx, adm)
	if err != nil {
		return 0, err
	}
	si, err := readSlot(ctx, cat, slot)
	if err != nil {
		return 0, err
	}
	if si.exists {
		if err := checkSlot(si, slot, database); err != nil {
			return 0, err
		}
		if state == nil {
			err = s.saveState(ctx, cl, slotState{Slot: slot, Database: database, CreatedLSN: "", ConfirmedLSN: si.confirmed.String()})
		}
		return si.confirmed, err
	}
	if state != nil {
		return 0, lostSlotError(slot, state)
	}
	if err := s.requestInitialSnapshot(ctx, cl); err != nil {
		return 0, err
	}
	res, err := createSlot(ctx, repl, slot, false)
	if err != nil {
		return 0, err
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return 0, fmt.Errorf("cdc: slot %s consistent point %q: %w", slot, res.ConsistentPoint, err)
	}
	s.log.Info("created replication slot", zap.String("slot", slot), zap.Stringer("consistent_point", lsn))
	return lsn, s.saveState(ctx, cl, slotState{Slot: slot, Database: database, CreatedLSN: lsn.String(), ConfirmedLSN: lsn.String()})
}

// startReplication starts pgoutput v2 with streaming and messages, retrying while the slot is
// still held by a previous reader's walsender.
func (s *Stage) startReplication(ctx context.Context, repl *pgconn.PgConn, start pglogrepl.LSN) error {
	args := []string{
		"proto_version '2'",
		"publication_names '" + s.cfg.Postgres.Publication + "'",
		"messages 'true'",
		"streaming 'on'",
	}
	deadline := time.Now().Add(slotActiveWait)
	for {
		err := pglogrepl.StartReplication(ctx, repl, s.cfg.Postgres.Slot, start,
			pglogrepl.StartReplicationOptions{Mode: pglogrepl.LogicalReplication, PluginArgs: args})
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55006" || time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("cdc: start replication on slot %s from %s: %w", s.cfg.Postgres.Slot, start, err)
			}
			return nil
		}
		s.log.Info("slot still active for a previous reader; retrying", zap.String("slot", s.cfg.Postgres.Slot), zap.String("detail", pgErr.Message))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// stateSaver records the confirmed LSN in the state topic at most every stateEvery.
type stateSaver struct {
	s        *Stage
	cl       *kgo.Client
	database string
	last     time.Time
	lsn      pglogrepl.LSN
}

const stateEvery = 10 * time.Second

func (ss *stateSaver) confirmed(lsn pglogrepl.LSN) {
	ss.lsn = lsn
	if time.Since(ss.last) < stateEvery {
		return
	}
	ss.save(context.Background(), lsn, false)
}

// save writes the state; sync waits for the acknowledgement (at shutdown), otherwise it is
// produced in the background and a failure only logged (the next save repeats it).
func (ss *stateSaver) save(ctx context.Context, lsn pglogrepl.LSN, sync bool) {
	ss.last = time.Now()
	st := slotState{Slot: ss.s.cfg.Postgres.Slot, Database: ss.database, ConfirmedLSN: lsn.String()}
	if sync {
		if err := ss.s.saveState(ctx, ss.cl, st); err != nil {
			ss.s.log.Warn("state not recorded", zap.Error(err))
		}
		return
	}
	st.UpdatedAt = time.Now().UTC()
	v, _ := json.Marshal(st)
	ss.cl.Produce(context.Background(), &kgo.Record{Topic: ss.s.stateTopic(), Key: []byte(st.Slot), Value: v}, func(_ *kgo.Record, err error) {
		if err != nil {
			ss.s.log.Warn("state not recorded", zap.Error(err))
		}
	})
}

// topicPartitionCounts learns the partition count of each reference and change topic
// (watermarks and truncations go to every partition). A topic just created may show no partitions in metadata for a moment.
// It asks the broker (topicPartitions), not kadm's metadata cache, which would hold the
// "no such topic" answer from before the topic was created for kgo's MetadataMinAge (5s).
func (s *Stage) topicPartitionCounts(ctx context.Context, cl *kgo.Client, st *streamer) error {
	deadline := time.Now().Add(30 * time.Second)
	for _, t := range slices.Concat(st.refTopics, st.changeTopics) {
		for {
			n, err := topicPartitions(ctx, cl, t)
			if err != nil {
				return fmt.Errorf("cdc: describe topic %s: %w", t, err)
			}
			if n > 0 {
				st.topicParts[t] = n
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("cdc: topic %s shows no partitions in metadata; check the cluster", t)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}
