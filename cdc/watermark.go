package cdc

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
)

// refMarks coalesces reference watermarks. A watermark at L on a reference topic partition
// means "this partition has every reference change up to LSN L": bubble-up holds a root's
// snapshot until every partition of its reference topics shows one at or above the snapshot's
// commit LSN. A transaction that changed a reference table writes its own watermark at commit
// (txn.go); every other commit only moves newest here, and the stream goroutine writes a
// watermark at newest to every reference topic behind it at most once per
// cdc.watermark_interval, so a quiet stage answers within the interval and a busy one writes
// at most (interval⁻¹ × partitions × reference topics) records per second.
//
// Why the watermark is true when written: pgoutput delivers transactions in commit order, and
// the stream produces every record of a transaction before the next, so when newest is L every
// reference record with a commit LSN up to L has been handed to the producer. The watermark is
// produced after them by the same idempotent producer to the same partition, which keeps
// per-partition order, so a reader sees it only after them.
//
// Stream goroutine only.
type refMarks struct {
	every  time.Duration
	last   map[string]pglogrepl.LSN // reference topic → newest watermark written to it
	newest pglogrepl.LSN            // commit LSN of the newest committed transaction
	due    time.Time                // when a pending watermark is written; zero: none pending
	wrote  time.Time                // when the last coalesced watermark was written
	armed  time.Time                // the read deadline set for due (zero: none)
	status time.Time                // st.nextStatus when armed (a status send re-sets the deadline)
}

// wmCommitted records a committed transaction (after its records were produced).
func (st *streamer) wmCommitted(t *txn) {
	m := &st.marks
	if len(st.refTopics) == 0 {
		return
	}
	if m.last == nil {
		m.last, m.every = map[string]pglogrepl.LSN{}, st.s.cfg.CDC.WatermarkInterval
	}
	for topic := range t.refs {
		m.last[topic] = max(m.last[topic], t.commitLSN) // written by commit itself
	}
	m.newest = max(m.newest, t.commitLSN)
	if !m.due.IsZero() {
		return
	}
	for _, topic := range st.refTopics {
		if m.last[topic] < m.newest {
			m.due = time.Now()
			if next := m.wrote.Add(m.every); next.After(m.due) {
				m.due = next
			}
			return
		}
	}
}

// maybeWatermarks writes the pending watermark when due; otherwise it makes sure the
// replication connection's read deadline wakes the loop by then, even if no WAL arrives.
func (st *streamer) maybeWatermarks(ctx context.Context) error {
	m := &st.marks
	if m.due.IsZero() {
		return nil
	}
	now := time.Now()
	if now.Before(m.due) {
		if m.due.Before(st.nextStatus) && (m.armed != m.due || m.status != st.nextStatus) {
			if err := st.repl.Conn().SetReadDeadline(m.due); err != nil {
				return fmt.Errorf("cdc: arm the watermark timer: %w", err)
			}
			m.armed, m.status = m.due, st.nextStatus
		}
		return nil
	}
	lsn := m.newest
	a := st.tr.open()
	hdr := []byte(lsn.String())
	for _, topic := range st.refTopics {
		if m.last[topic] >= lsn {
			continue
		}
		if err := st.watermark(ctx, a, topic, lsn, hdr); err != nil {
			return fmt.Errorf("cdc: watermark at LSN %s on %s: %w", lsn, topic, err)
		}
		m.last[topic] = lsn
	}
	// Nothing of its own to confirm: the transactions up to lsn confirm themselves.
	st.tr.close(a, 0)
	m.due, m.wrote = time.Time{}, now
	if !m.armed.IsZero() {
		m.armed = time.Time{}
		if err := st.repl.Conn().SetReadDeadline(st.nextStatus); err != nil {
			return fmt.Errorf("cdc: reset the read deadline: %w", err)
		}
	}
	return nil
}
