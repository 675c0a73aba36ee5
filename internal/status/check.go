package status

import "fmt"

// Thresholds are the limits Check compares a Report with; a negative limit is not checked.
type Thresholds struct {
	// MaxSlotLagBytes is the most WAL the slot may hold back, in bytes.
	MaxSlotLagBytes int64
	// MaxConsumerLag is the most records a walhook consumer group may be behind on one topic.
	MaxConsumerLag int64
	// MaxDLQ is the most records the dead-letter topic may hold.
	MaxDLQ int64
}

// NoThresholds checks nothing but a missing or lost slot.
var NoThresholds = Thresholds{MaxSlotLagBytes: -1, MaxConsumerLag: -1, MaxDLQ: -1}

// Check fills r.Violations with every limit crossed and reports whether there is any. A slot
// that does not exist or whose WAL is lost always counts: nothing is being captured.
func (r *Report) Check(th Thresholds) bool {
	r.Violations = nil
	add := func(format string, args ...any) { r.Violations = append(r.Violations, fmt.Sprintf(format, args...)) }
	if s := r.Slot; s != nil && r.slotRead {
		switch {
		case !s.Exists:
			add("replication slot %s does not exist: walhook cdc creates it on start; if it ran before, the slot was dropped or lost in a failover (docs/operations.md, \"Replication slot lost\")", s.Name)
		case s.WALStatus == "lost":
			add("replication slot %s has lost WAL it still needed (wal_status lost): re-snapshot (docs/operations.md, \"Replication slot lost\")", s.Name)
		case th.MaxSlotLagBytes >= 0 && s.LagBytes > th.MaxSlotLagBytes:
			add("replication slot %s holds back %d bytes of WAL, above --max-slot-lag-bytes %d: is walhook cdc running and Kafka accepting writes?", s.Name, s.LagBytes, th.MaxSlotLagBytes)
		}
	}
	if th.MaxConsumerLag >= 0 {
		for _, g := range r.Groups {
			for _, t := range g.Topics {
				if t.Lag > th.MaxConsumerLag {
					upTo := ""
					if t.Approximate {
						upTo = "up to "
					}
					add("group %s (%s) is %s%d records behind on %s, above --max-consumer-lag %d: scale the stage or look at its logs", g.Group, g.Stage, upTo, t.Lag, t.Topic, th.MaxConsumerLag)
				}
			}
		}
	}
	if th.MaxDLQ >= 0 && r.DeadLetters.Records > th.MaxDLQ {
		add("dead-letter topic %s holds %d records, above --max-dlq %d: see `walhook hooks log` and `walhook hooks replay`", r.DeadLetters.Topic, r.DeadLetters.Records, th.MaxDLQ)
	}
	return len(r.Violations) > 0
}
