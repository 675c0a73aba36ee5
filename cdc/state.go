package cdc

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// slotState is the durable record of a slot walhook has used, in the compacted topic
// <prefix>cdc.state keyed by slot name. Its existence is how a lost slot is told from a new
// one: a slot missing in PostgreSQL but present here was dropped or lost in a failover, and
// the changes after ConfirmedLSN are gone from the WAL.
type slotState struct {
	Slot         string    `json:"slot"`
	Database     string    `json:"database"`
	CreatedLSN   string    `json:"created_lsn,omitempty"`
	ConfirmedLSN string    `json:"confirmed_lsn"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// stateTopic is where slot states are kept.
func (s *Stage) stateTopic() string { return s.cfg.Kafka.TopicPrefix + "cdc.state" }

// indexTopic is where the nested-subordinate key index is kept.
func (s *Stage) indexTopic() string { return s.cfg.Kafka.TopicPrefix + "cdc.index" }

// loadState returns the recorded state of the stage's slot, nil when there is none.
func (s *Stage) loadState(ctx context.Context, adm *kadm.Client) (*slotState, error) {
	var st *slotState
	var bad error
	err := s.readCompacted(ctx, adm, s.stateTopic(), func(k, v []byte) {
		if string(k) != s.cfg.Postgres.Slot {
			return
		}
		if v == nil {
			st = nil
			return
		}
		var x slotState
		if err := json.Unmarshal(v, &x); err != nil {
			bad = fmt.Errorf("cdc: state of slot %s in %s is not valid JSON: %w", k, s.stateTopic(), err)
			return
		}
		st = &x
	})
	if err == nil {
		err = bad
	}
	return st, err
}

// saveState writes the slot's state and waits for Kafka to acknowledge it.
func (s *Stage) saveState(ctx context.Context, cl *kgo.Client, st slotState) error {
	st.UpdatedAt = time.Now().UTC()
	v, err := json.Marshal(st)
	if err != nil {
		return err
	}
	rec := &kgo.Record{Topic: s.stateTopic(), Key: []byte(st.Slot), Value: v}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("cdc: record state of slot %s in %s: %w", st.Slot, s.stateTopic(), err)
	}
	return nil
}

// lostSlotError is the error of a slot that existed at the last run and is gone.
func lostSlotError(slot string, st *slotState) error {
	return fmt.Errorf("cdc: replication slot %s is gone (dropped by hand or lost in a failover): walhook confirmed "+
		"changes up to LSN %s (at %s) and every change committed after that was not captured. Nothing was restarted "+
		"from \"now\". To recover, re-snapshot: `walhook cdc resnapshot` (every table), or forget the old slot by "+
		"deleting its state (a tombstone for key %q in topic cdc.state) and start again, which takes a new "+
		"initial snapshot", slot, st.ConfirmedLSN, st.UpdatedAt.Format(time.RFC3339), slot)
}
