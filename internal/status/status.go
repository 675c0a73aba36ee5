// Package status answers "where is walhook behind, and why" for a running deployment: the
// replication slot and its lag, each walhook consumer group's lag per topic, the dead-letter and
// retry backlogs, disabled subscriptions and the oldest undelivered event. `walhook status` prints
// its Report and exits non-zero when a Thresholds limit is crossed.
//
// It reads PostgreSQL and Kafka only; it never writes, joins a consumer group or commits. It
// imports config and internal/kafkaconn; it must not import a stage package.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/kafkaconn"
	"github.com/walhook/walhook/internal/redact"
)

// Report is what `walhook status` shows; its JSON form is the --json output.
type Report struct {
	CheckedAt             time.Time              `json:"checked_at"`
	Slot                  *Slot                  `json:"slot"`
	Groups                []Group                `json:"groups"`
	DeadLetters           TopicSize              `json:"dead_letters"`
	RetryBacklog          []TopicLag             `json:"retry_backlog"`
	DisabledSubscriptions []DisabledSubscription `json:"disabled_subscriptions"`
	// DisabledSubscriptionsUnknown says why the disabled subscriptions could not be read; the
	// list is then empty, not known to be empty.
	DisabledSubscriptionsUnknown string `json:"disabled_subscriptions_unknown,omitempty"`
	// OldestUndelivered is the oldest record of the snapshot and retry topics that the webhook
	// group has not committed; nil when there is none, or when it could not be read
	// (OldestUndeliveredUnknown says why).
	OldestUndelivered        *Record `json:"oldest_undelivered"`
	OldestUndeliveredUnknown string  `json:"oldest_undelivered_unknown,omitempty"`
	// InexactReferences is bubble-up's record of snapshots that showed a reference with a
	// version other than the one as of their transaction (beyond bubbleup.reference_history).
	// Records counts log positions, transaction markers included: 0 means every reference of
	// every snapshot so far was exact.
	InexactReferences TopicSize `json:"inexact_references"`
	// PoisonRecords are the stages' poison topics (config.PoisonTopic): input records a stage
	// could not process and copied aside (on_poison: dead_letter), by stage, counted exactly
	// unless Approximate. `walhook dlq list` shows them.
	PoisonRecords []PoisonTopic `json:"poison_records"`
	// Errors are the parts that could not be read, each naming the thing and the fix.
	Errors []string `json:"errors,omitempty"`
	// Violations are the thresholds crossed (filled by Check).
	Violations []string `json:"violations,omitempty"`

	// slotRead is set when PostgreSQL answered the slot query: only then does a missing slot
	// mean a missing slot.
	slotRead bool
}

// Slot is the logical replication slot of postgres.slot.
type Slot struct {
	Name string `json:"name"`
	// Unknown says why the slot could not be read; the other fields then mean nothing.
	Unknown           string `json:"unknown,omitempty"`
	Exists            bool   `json:"exists"`
	Active            bool   `json:"active"`
	ConfirmedFlushLSN string `json:"confirmed_flush_lsn,omitempty"`
	// LagBytes is pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn): WAL the server
	// keeps for walhook.
	LagBytes int64 `json:"lag_bytes"`
	// LagSeconds is pg_stat_replication.replay_lag of the slot's walsender: null while no cdc
	// is connected, when the connection may not read pg_stat_replication (grant
	// pg_read_all_stats), or when the slot is idle and caught up.
	LagSeconds *float64 `json:"lag_seconds"`
	// WALStatus is pg_replication_slots.wal_status: reserved, extended, unreserved or lost.
	WALStatus string `json:"wal_status,omitempty"`
}

// Group is one walhook consumer group.
type Group struct {
	// Stage is bubbleup, webhook or compliance.
	Stage string `json:"stage"`
	Group string `json:"group"`
	// State is the broker's group state (Stable, Empty, Dead, ...).
	State  string     `json:"state"`
	Lag    int64      `json:"lag"`
	Topics []TopicLag `json:"topics"`
	// Unknown says why the group's lag could not be read; Lag and Topics then mean nothing.
	Unknown string `json:"unknown,omitempty"`
}

// TopicLag is a group's lag on one topic: records between its committed offsets (the log
// start where it has none) and the end of the log, summed over the partitions.
type TopicLag struct {
	Topic      string `json:"topic"`
	Lag        int64  `json:"lag"`
	Partitions int    `json:"partitions"`
	// Missing is true when the topic does not exist yet (the stage that creates it never ran).
	Missing bool `json:"missing,omitempty"`
	// Approximate is true when Lag is an upper bound: the span of offsets, transaction markers
	// included, because counting the records in it would read too much or took too long.
	// Otherwise Lag counts records only, so a caught-up group on a transactional topic is 0.
	Approximate bool `json:"approximate,omitempty"`
}

// PoisonTopic is one stage's poison topic.
type PoisonTopic struct {
	Stage string `json:"stage"`
	TopicSize
	// Approximate is true when Records is the span of offsets (transaction markers included)
	// because counting took too long.
	Approximate bool `json:"approximate,omitempty"`
}

// MarshalJSON writes records as null when the size is unknown.
func (p PoisonTopic) MarshalJSON() ([]byte, error) {
	type plain struct {
		Stage       string `json:"stage"`
		Topic       string `json:"topic"`
		Records     int64  `json:"records"`
		Missing     bool   `json:"missing,omitempty"`
		Unknown     string `json:"unknown,omitempty"`
		Approximate bool   `json:"approximate,omitempty"`
	}
	return nullWhenUnknown(plain{p.Stage, p.Topic, p.Records, p.Missing, p.Unknown, p.Approximate}, p.Unknown, "records")
}

// TopicSize is the number of records a topic retains.
type TopicSize struct {
	Topic   string `json:"topic"`
	Records int64  `json:"records"`
	Missing bool   `json:"missing,omitempty"`
	// Unknown says why the size could not be read; Records is then null in JSON.
	Unknown string `json:"unknown,omitempty"`
}

// MarshalJSON writes records as null when the size is unknown, so a reader of --json cannot
// take it for an empty topic.
func (t TopicSize) MarshalJSON() ([]byte, error) {
	type plain TopicSize
	return nullWhenUnknown(plain(t), t.Unknown, "records")
}

// MarshalJSON writes lag as null when the group's lag is unknown.
func (g Group) MarshalJSON() ([]byte, error) {
	type plain Group
	return nullWhenUnknown(plain(g), g.Unknown, "lag")
}

// MarshalJSON writes lag_bytes as null when the slot is unknown.
func (s Slot) MarshalJSON() ([]byte, error) {
	type plain Slot
	return nullWhenUnknown(plain(s), s.Unknown, "lag_bytes")
}

// nullWhenUnknown marshals v, with member key null when unknown (the reason) is set.
func nullWhenUnknown(v any, unknown, key string) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil || unknown == "" {
		return b, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m[key] = json.RawMessage("null")
	return json.Marshal(m)
}

// DisabledSubscription is a row of hook.subscription that is not enabled. URL is masked
// (password and query values).
type DisabledSubscription struct {
	UUID       string     `json:"uuid"`
	Tenant     string     `json:"tenant"`
	EventType  string     `json:"event_type"`
	URL        string     `json:"url"`
	Reason     string     `json:"reason"`
	DisabledAt *time.Time `json:"disabled_at"`
}

// Record locates one Kafka record.
type Record struct {
	Topic      string    `json:"topic"`
	Partition  int32     `json:"partition"`
	Offset     int64     `json:"offset"`
	Timestamp  time.Time `json:"timestamp"`
	AgeSeconds float64   `json:"age_seconds"`
}

// Options tune Collect.
type Options struct {
	// Timeout bounds each read: connecting to PostgreSQL, each Kafka request, and reading the
	// records behind each group (to count them and find the oldest undelivered one). Default 5s.
	Timeout time.Duration
	// CountLimit is the most records read per partition to count a lag exactly; a larger lag is
	// the offset span (Approximate). Default 10000.
	CountLimit int64
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Collect reads everything a Report shows. A part that cannot be read is recorded in
// Report.Errors and the rest is still collected; the error return is for a config that cannot
// be used at all.
func Collect(ctx context.Context, cfg *config.Config, o Options) (*Report, error) {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CountLimit <= 0 {
		o.CountLimit = 10000
	}
	r := &Report{CheckedAt: o.Now().UTC(), DisabledSubscriptions: []DisabledSubscription{}}
	r.collectPostgres(ctx, cfg, o)
	opts, err := kafkaconn.Opts(cfg.Kafka)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("status: kafka client: %w", err)
	}
	defer cl.Close()
	r.collectKafka(ctx, cfg, cl, opts, o)
	return r, nil
}

func (r *Report) fail(format string, args ...any) {
	r.Errors = append(r.Errors, fmt.Sprintf(format, args...))
}

// collectPostgres reads the slot and the disabled subscriptions.
func (r *Report) collectPostgres(ctx context.Context, cfg *config.Config, o Options) {
	r.Slot = &Slot{Name: cfg.Postgres.Slot}
	cctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	conn, err := pgx.Connect(cctx, cfg.Postgres.URL)
	if err != nil {
		reason := fmt.Sprintf("PostgreSQL not reachable: %v", config.ConnectErrorCause(err))
		r.fail("postgres: %s; check postgres.url / WALHOOK_PG_URL", reason)
		r.Slot.Unknown, r.DisabledSubscriptionsUnknown = reason, reason
		return
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if err := r.Slot.read(ctx, conn); err != nil {
		r.fail("postgres: replication slot %s: %v", r.Slot.Name, err)
		r.Slot.Unknown = fmt.Sprintf("reading pg_replication_slots failed: %v", err)
	} else {
		r.slotRead = true
	}
	subs, err := disabledSubscriptions(ctx, conn)
	if err != nil {
		r.fail("postgres: disabled subscriptions: %v; apply the hook schema (internal/demo/schema.sql) to postgres.url", err)
		r.DisabledSubscriptionsUnknown = fmt.Sprintf("reading hook.subscription failed: %v", err)
	}
	r.DisabledSubscriptions = subs
}

const slotQuery = `SELECT s.active, s.confirmed_flush_lsn::text,
	coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn), 0)::bigint,
	coalesce(s.wal_status, ''),
	(SELECT extract(epoch FROM rep.replay_lag)::float8 FROM pg_stat_replication rep WHERE rep.pid = s.active_pid)
FROM pg_replication_slots s WHERE s.slot_name = $1`

func (s *Slot) read(ctx context.Context, conn *pgx.Conn) error {
	var lsn *string
	err := conn.QueryRow(ctx, slotQuery, s.Name).Scan(&s.Active, &lsn, &s.LagBytes, &s.WALStatus, &s.LagSeconds)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // Exists stays false; Check reports it
	}
	if err != nil {
		return err
	}
	s.Exists = true
	if lsn != nil {
		s.ConfirmedFlushLSN = *lsn
	}
	return nil
}

func disabledSubscriptions(ctx context.Context, conn *pgx.Conn) ([]DisabledSubscription, error) {
	rows, err := conn.Query(ctx, `SELECT uuid::text, tenant_id, event_type, url, coalesce(disabled_reason, ''), disabled_at
		FROM hook.subscription WHERE NOT is_enabled ORDER BY disabled_at NULLS FIRST, id`)
	if err != nil {
		return []DisabledSubscription{}, err
	}
	out := []DisabledSubscription{}
	for rows.Next() {
		var d DisabledSubscription
		if err := rows.Scan(&d.UUID, &d.Tenant, &d.EventType, &d.URL, &d.Reason, &d.DisabledAt); err != nil {
			rows.Close()
			return out, err
		}
		d.URL = redact.URL(d.URL)
		out = append(out, d)
	}
	return out, rows.Err()
}
