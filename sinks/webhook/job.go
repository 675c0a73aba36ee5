package webhook

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/internal/chunked"
)

// Job is one delivery of one snapshot to one subscription as it travels through the retry,
// request and dead-letter topics (JSON, keyed by subscription uuid and root key).
type Job struct {
	Subscription string    `json:"subscription"`
	Snapshot     SnapJSON  `json:"snapshot"`
	Attempt      int       `json:"attempt"` // the next attempt, 1-based
	FirstAttempt time.Time `json:"first_attempt"`
	Due          time.Time `json:"due,omitzero"`
	// Kind is "retry", "retrigger", "replay" or "dead_letter".
	Kind string `json:"kind"`
	// LastError and LastStatus describe the last failed attempt (dead-letter records).
	LastError  string    `json:"last_error,omitempty"`
	LastStatus int       `json:"last_status,omitempty"`
	DeadAt     time.Time `json:"dead_at,omitzero"`
}

// SnapJSON is avro.Snapshot in JSON. Payload is kept byte for byte (base64 in JSON).
type SnapJSON struct {
	RootType    string    `json:"root_type"`
	EventPrefix string    `json:"event_prefix"`
	Key         string    `json:"key"`
	Tenant      string    `json:"tenant"`
	EventType   string    `json:"event_type"`
	Verb        string    `json:"verb"`
	Version     int64     `json:"version"`
	CommitLSN   uint64    `json:"commit_lsn"`
	CommitTime  time.Time `json:"commit_time"`
	Payload     []byte    `json:"payload"`
}

func toSnapJSON(s *avro.Snapshot) SnapJSON {
	return SnapJSON{RootType: s.RootType, EventPrefix: s.EventPrefix, Key: s.Key, Tenant: s.Tenant,
		EventType: s.EventType, Verb: s.Verb.String(), Version: s.Version, CommitLSN: s.CommitLSN,
		CommitTime: s.CommitTime, Payload: s.Payload}
}

func (j SnapJSON) snapshot() avro.Snapshot {
	s := avro.Snapshot{RootType: j.RootType, EventPrefix: j.EventPrefix, Key: j.Key, Tenant: j.Tenant,
		EventType: j.EventType, Version: j.Version, CommitLSN: j.CommitLSN, CommitTime: j.CommitTime, Payload: j.Payload}
	for v := avro.VerbCreated; v <= avro.VerbDeleted; v++ {
		if v.String() == j.Verb {
			s.Verb = v
		}
	}
	return s
}

// decodeJobRecord decodes the job of a record of a retry, request or dead-letter topic.
func decodeJobRecord(r *kgo.Record) (Job, error) {
	if err := chunked.Err(r); err != nil {
		return Job{}, fmt.Errorf("webhook: job record: %w", err)
	}
	return decodeJob(r.Value)
}

func decodeJob(value []byte) (Job, error) {
	var j Job
	if err := json.Unmarshal(value, &j); err != nil {
		return Job{}, fmt.Errorf("webhook: decoding job: %w", err)
	}
	if j.Subscription == "" || j.Attempt < 1 {
		return Job{}, fmt.Errorf("webhook: job without subscription or attempt: %.200s", value)
	}
	return j, nil
}

// jobKey keys job records so that one subscription's deliveries of one root share a partition.
func jobKey(sub, rootKey string) []byte { return []byte(sub + "|" + rootKey) }
