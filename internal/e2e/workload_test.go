package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ledger is what one writer committed: per root, how many source transactions touched it and
// the writer-local sequence number of the last one; per session, the sequence of its last change.
// A tenant has one writer, and its roots reference only its own sessions, so sequence numbers of
// a root and its session are comparable.
type ledger struct {
	tenant    string
	txns      int          // committed transactions
	rollbacks int          // transactions rolled back on purpose
	rootTxns  map[int]int  // root id → committed transactions that touched it
	rootLast  map[int]int  // root id → seq of the last one
	sessLast  map[int]int  // session id → seq of its last change
	deleted   map[int]bool // soft-deleted roots (never touched again)
	multiRoot int          // transactions that touched more than one root
	sessInTxn int          // transactions that changed a root and a session together
	// objects holds, per root, the object the database built inside each committed transaction
	// that touched it, just before its COMMIT (objectSQL): what version n must show.
	objects map[int][]json.RawMessage
	sessDel int // sessions deleted (incidents still pointing at them show session null)
	bursts  int // bursts of back-to-back transactions
}

// incident is the writer's view of one live root.
type incident struct {
	id       int
	timeline []int // live (not soft-deleted) timeline ids
}

// writer drives one tenant's share of the workload over its own connection.
type writer struct {
	conn      *pgx.Conn
	rnd       *rand.Rand
	led       *ledger
	sessions  []int
	incidents []*incident
	seq       int
}

// txn is the pending effect of one transaction, applied to the writer's state only on commit.
type txn struct {
	tx       pgx.Tx
	roots    map[int]bool
	sessions map[int]bool
	apply    []func()
}

func newWriter(conn *pgx.Conn, tenant string, seed uint64) *writer {
	return &writer{conn: conn, rnd: rand.New(rand.NewPCG(seed, 0x5eed)), led: &ledger{
		tenant: tenant, rootTxns: map[int]int{}, rootLast: map[int]int{}, sessLast: map[int]int{}, deleted: map[int]bool{},
		objects: map[int][]json.RawMessage{},
	}}
}

// run commits transactions at about rate per second until ctx is done. A transaction is never
// interrupted half-way: ctx is checked only between transactions.
func (w *writer) run(ctx context.Context, rate float64) error {
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		n := 1
		if w.rnd.IntN(300) == 0 { // now and then a burst that puts bubble-up behind
			n = 100
			w.led.bursts++
		}
		for range n {
			if err := w.step(); err != nil {
				return fmt.Errorf("writer %s after %d transactions: %w", w.led.tenant, w.led.txns, err)
			}
		}
	}
}

func (w *writer) step() error {
	ctx := context.Background()
	tx, err := w.conn.Begin(ctx)
	if err != nil {
		return err
	}
	t := &txn{tx: tx, roots: map[int]bool{}, sessions: map[int]bool{}}
	rollback := false
	switch n := w.rnd.IntN(100); {
	case len(w.sessions) < 2 || n < 4:
		err = w.newSession(t)
	case n < 10:
		err = w.updateSession(t)
	case n < 12:
		err = w.deleteSession(t)
	case len(w.incidents) < 3 || n < 30:
		err = w.newIncident(t)
	case n < 50:
		err = w.updateIncident(t, w.pick())
	case n < 78:
		err = w.timelineOp(t, w.pick())
	case n < 90:
		err = w.multi(t)
	case n < 95:
		err = w.softDelete(t, w.pick())
	default:
		err = w.updateIncident(t, w.pick())
		rollback = true
	}
	if err != nil {
		_ = tx.Rollback(ctx)
		return err
	}
	if rollback {
		w.led.rollbacks++
		return tx.Rollback(ctx)
	}
	objs, err := w.objects(t)
	if err != nil {
		_ = tx.Rollback(ctx)
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	for id, obj := range objs {
		w.led.objects[id] = append(w.led.objects[id], obj)
	}
	w.seq++
	w.led.txns++
	for id := range t.roots {
		w.led.rootTxns[id]++
		w.led.rootLast[id] = w.seq
	}
	for id := range t.sessions {
		w.led.sessLast[id] = w.seq
	}
	if len(t.roots) > 1 {
		w.led.multiRoot++
	}
	if len(t.roots) > 0 && len(t.sessions) > 0 {
		w.led.sessInTxn++
	}
	for _, f := range t.apply {
		f()
	}
	return nil
}

func (w *writer) pick() *incident { return w.incidents[w.rnd.IntN(len(w.incidents))] }

// objectSQL builds the payload of the given roots, soft-deleted ones included, as payloadSQL does.
var objectSQL = strings.Replace(payloadSQL, "WHERE NOT i.is_deleted", "WHERE i.id = ANY($1)", 1)

// objects is the object of every root t touched, built inside t just before its COMMIT: the
// session joined as it stands in the transaction.
func (w *writer) objects(t *txn) (map[int]json.RawMessage, error) {
	out := map[int]json.RawMessage{}
	if len(t.roots) == 0 {
		return out, nil
	}
	ids := make([]int, 0, len(t.roots))
	for id := range t.roots {
		ids = append(ids, id)
	}
	rows, err := t.tx.Query(context.Background(), objectSQL, ids)
	if err != nil {
		return nil, fmt.Errorf("expected objects: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var key, doc string
		var session int
		if err := rows.Scan(&key, &session, &doc); err != nil {
			return nil, err
		}
		var id int
		if _, err := fmt.Sscan(key, &id); err != nil {
			return nil, err
		}
		out[id] = json.RawMessage(doc)
	}
	return out, rows.Err()
}

var (
	sessionStatuses = []string{"SCHEDULED", "IN_PROGRESS", "COMPLETED", "CANCELLED"}
	statuses        = []string{"TRIGGERED", "RESOLVED", "DISMISSED", "REOPENED"}
	severities      = []string{"LOW", "MEDIUM", "HIGH"}
	actions         = []string{"DETECTED", "ESCALATED", "RESOLVED", "DISMISSED", "REOPENED", "COMMENTED"}
)

func (w *writer) oneOf(s []string) string { return s[w.rnd.IntN(len(s))] }

func (w *writer) newSession(t *txn) error {
	var id int
	err := t.tx.QueryRow(context.Background(), `INSERT INTO session.instance (score, status, tenant_id)
		VALUES ($1, $2, $3) RETURNING id`, w.rnd.IntN(100), w.oneOf(sessionStatuses), w.led.tenant).Scan(&id)
	t.sessions[id] = true
	t.apply = append(t.apply, func() { w.sessions = append(w.sessions, id) })
	return err
}

func (w *writer) updateSession(t *txn) error {
	id := w.sessions[w.rnd.IntN(len(w.sessions))]
	t.sessions[id] = true
	_, err := t.tx.Exec(context.Background(), `UPDATE session.instance SET score = $2, status = $3,
		updated_at = clock_timestamp() WHERE id = $1`, id, w.rnd.IntN(100), w.oneOf(sessionStatuses))
	return err
}

// deleteSession deletes a session the tenant's incidents may still point at: they show session
// null from this transaction on (the demo schema's foreign key is dropped for the run: the
// session table belongs to another service).
func (w *writer) deleteSession(t *txn) error {
	if len(w.sessions) < 3 {
		return w.updateSession(t)
	}
	i := w.rnd.IntN(len(w.sessions))
	id := w.sessions[i]
	t.sessions[id] = true
	t.apply = append(t.apply, func() {
		w.sessions = slices.DeleteFunc(w.sessions, func(x int) bool { return x == id })
		w.led.sessDel++
	})
	_, err := t.tx.Exec(context.Background(), `DELETE FROM session.instance WHERE id = $1`, id)
	return err
}

func (w *writer) newIncident(t *txn) error {
	ctx := context.Background()
	var id int
	err := t.tx.QueryRow(ctx, `INSERT INTO incident.instance (name, description, status, severity, start_time,
		session_instance_id, external_id, created_by, updated_by, tenant_id)
		VALUES ($1, $2, 'TRIGGERED', $3, clock_timestamp() - interval '1 minute', $4, $5, $6, $6, $7) RETURNING id`,
		fmt.Sprintf("incident %d", w.rnd.IntN(1e6)), nullable(w.rnd, "described"), w.oneOf(severities),
		w.sessions[w.rnd.IntN(len(w.sessions))], nullable(w.rnd, "ext"), w.rnd.IntN(5), w.led.tenant).Scan(&id)
	if err != nil {
		return err
	}
	in := &incident{id: id}
	t.roots[id] = true
	t.apply = append(t.apply, func() { w.incidents = append(w.incidents, in) })
	if w.rnd.IntN(2) == 0 {
		return w.insertTimeline(t, in, "DETECTED")
	}
	return nil
}

func (w *writer) updateIncident(t *txn, in *incident) error {
	ctx := context.Background()
	t.roots[in.id] = true
	status := w.oneOf(statuses)
	session := any(nil)
	if w.rnd.IntN(5) == 0 {
		session = w.sessions[w.rnd.IntN(len(w.sessions))]
	}
	_, err := t.tx.Exec(ctx, `UPDATE incident.instance SET status = $2, severity = $3,
		end_time = CASE WHEN $2 IN ('RESOLVED', 'DISMISSED') THEN clock_timestamp() END,
		resolution_notes = $4, description = coalesce($5, description),
		session_instance_id = coalesce($6, session_instance_id),
		updated_at = clock_timestamp(), updated_by = $7 WHERE id = $1`,
		in.id, status, w.oneOf(severities), nullable(w.rnd, "notes"), nullable(w.rnd, "new description"), session, w.rnd.IntN(5))
	if err != nil {
		return err
	}
	if w.rnd.IntN(6) == 0 { // the referenced service changes in the same transaction
		return w.updateSession(t)
	}
	return nil
}

func (w *writer) timelineOp(t *txn, in *incident) error {
	ctx := context.Background()
	t.roots[in.id] = true
	if len(in.timeline) == 0 {
		return w.insertTimeline(t, in, w.oneOf(actions))
	}
	tl := in.timeline[w.rnd.IntN(len(in.timeline))]
	drop := func() { in.timeline = slices.DeleteFunc(in.timeline, func(x int) bool { return x == tl }) }
	switch n := w.rnd.IntN(10); {
	case n < 4:
		return w.insertTimeline(t, in, w.oneOf(actions))
	case n < 7:
		_, err := t.tx.Exec(ctx, `UPDATE incident.timeline SET description = $2, updated_at = clock_timestamp(),
			updated_by = $3 WHERE id = $1`, tl, nullable(w.rnd, "edited"), w.rnd.IntN(5))
		return err
	case n < 9:
		t.apply = append(t.apply, drop)
		_, err := t.tx.Exec(ctx, `UPDATE incident.timeline SET is_deleted = true, updated_at = clock_timestamp() WHERE id = $1`, tl)
		return err
	default: // a hard delete: needs REPLICA IDENTITY FULL to be keyed by its root
		t.apply = append(t.apply, drop)
		_, err := t.tx.Exec(ctx, `DELETE FROM incident.timeline WHERE id = $1`, tl)
		return err
	}
}

func (w *writer) insertTimeline(t *txn, in *incident, action string) error {
	var id int
	err := t.tx.QueryRow(context.Background(), `INSERT INTO incident.timeline (incident_instance_id, action, description,
		created_by, updated_by, tenant_id) VALUES ($1, $2, $3, $4, $4, $5) RETURNING id`,
		in.id, action, nullable(w.rnd, "what happened"), w.rnd.IntN(5), w.led.tenant).Scan(&id)
	t.apply = append(t.apply, func() { in.timeline = append(in.timeline, id) })
	return err
}

// multi changes two or three roots of the tenant in one transaction.
func (w *writer) multi(t *txn) error {
	n := min(2+w.rnd.IntN(2), len(w.incidents))
	for _, i := range w.rnd.Perm(len(w.incidents))[:n] {
		in := w.incidents[i]
		var err error
		if w.rnd.IntN(2) == 0 {
			err = w.updateIncident(t, in)
		} else {
			err = w.timelineOp(t, in)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (w *writer) softDelete(t *txn, in *incident) error {
	t.roots[in.id] = true
	t.apply = append(t.apply, func() {
		w.led.deleted[in.id] = true
		w.incidents = slices.DeleteFunc(w.incidents, func(x *incident) bool { return x == in })
	})
	_, err := t.tx.Exec(context.Background(), `UPDATE incident.instance SET is_deleted = true, updated_at = clock_timestamp() WHERE id = $1`, in.id)
	return err
}

// nullable is s with a random suffix, or NULL one time in four.
func nullable(rnd *rand.Rand, s string) any {
	if rnd.IntN(4) == 0 {
		return nil
	}
	return fmt.Sprintf("%s %d", s, rnd.IntN(1e6))
}
