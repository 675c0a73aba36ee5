package config

import (
	"strconv"
	"time"
)

// bubbleup checks the settings of the bubble-up stage that can be wrong by value.
func (v *checker) bubbleup(b *BubbleUp) {
	if b.ReferenceHistory < time.Minute {
		v.add("bubbleup.reference_history", "%s is too short: it bounds how far bubble-up may run behind cdc and still show references as of each transaction; use at least 1m (default %s)",
			b.ReferenceHistory, DefaultBubbleUpReferenceHistory)
	}
	switch b.ReferenceHistoryExceeded {
	case ReferenceHistoryNewest, ReferenceHistoryStop:
	default:
		v.add("bubbleup.reference_history_exceeded", "%q is not one of %q (show the newest version, counted) or %q (stop the stage)",
			b.ReferenceHistoryExceeded, ReferenceHistoryNewest, ReferenceHistoryStop)
	}
	v.onPoison("bubbleup.on_poison", b.OnPoison)
}

// ReferenceTopicConfigs are the topic configs of a reference topic: compacted (a new bubble-up
// member rebuilds every row from it), keeping every version for bubbleup.reference_history after a
// newer one superseded it (min.compaction.lag.ms), so a member that starts behind finds the
// versions its snapshots need.
func (c *Config) ReferenceTopicConfigs() map[string]string {
	h := c.BubbleUp.ReferenceHistory
	if h <= 0 {
		h = DefaultBubbleUpReferenceHistory
	}
	return map[string]string{"cleanup.policy": "compact", "min.compaction.lag.ms": strconv.FormatInt(h.Milliseconds(), 10)}
}

// InexactReferenceTopic is where bubble-up records every snapshot whose references it could not
// show as of its source transaction (beyond bubbleup.reference_history): one record per
// reference, keyed by root key, in the transaction of the snapshot. `walhook status` counts it.
func (c *Config) InexactReferenceTopic() string {
	group := c.BubbleUp.Group
	if group == "" {
		group = DefaultBubbleUpGroup
	}
	return c.Kafka.TopicPrefix + group + ".inexact-references"
}
