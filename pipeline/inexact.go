package pipeline

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/walhook/walhook/config"
)

// A reference the store cannot project as of a snapshot's transaction (refstore.go asOf: the
// versions around the snapshot's LSN were compacted away or pruned, beyond
// bubbleup.reference_history, or the row was first read by an initial snapshot after it) is never
// shown silently: the snapshot shows the newest version the store has (the contract's minimum),
// and the stage counts it (walhook_bubbleup_reference_inexact_total), logs it, and records it on
// the topic config.Config.InexactReferenceTopic in the snapshot's own Kafka transaction, which
// `walhook status` counts. With bubbleup.reference_history_exceeded: stop, a history that was
// removed stops the stage instead.

// inexactRef is one reference a snapshot could not project as of its transaction.
type inexactRef struct {
	ref *config.Reference
	key string
	res refResult
}

// inexactRecord is the value of a record of the inexact-reference topic.
type inexactRecord struct {
	Root      string `json:"root"`
	Key       string `json:"key"`
	Version   int64  `json:"version"`
	CommitLSN string `json:"commit_lsn"`
	Reference string `json:"reference"`
	Table     string `json:"table"`
	RefKey    string `json:"ref_key"`
	UsedLSN   string `json:"used_lsn,omitempty"` // the version shown instead; empty: null shown
	Reason    string `json:"reason"`
	Setting   string `json:"setting"`
}

// inexactLogEvery rate-limits the log line per stage; the metric and the topic count every one.
const inexactLogEvery = time.Second

// reportInexact handles one inexact reference of the snapshot v version of root key at lsn.
func (w *partWorker) reportInexact(key string, version int64, lsn uint64, x inexactRef) error {
	bu := w.s.cfg.BubbleUp
	setting := fmt.Sprintf("bubbleup.reference_history (now %s) and min.compaction.lag.ms of topic %s", bu.ReferenceHistory, w.s.cfg.Kafka.ReferenceTopic(x.ref.Table))
	if x.res.reason == inexactSnapshot {
		setting = "none: the initial snapshot read the row after this transaction; its earlier state was never captured"
	}
	if x.res.reason == inexactHistory && bu.ReferenceHistoryExceeded == config.ReferenceHistoryStop {
		return fmt.Errorf("snapshot v%d at LSN %s: reference %s (%s key %q) as of the transaction is beyond the reference history, "+
			"and bubbleup.reference_history_exceeded is stop: raise %s, or set reference_history_exceeded: newest to show the newest version instead",
			version, lsnText(lsn), x.ref.Field, x.ref.Table, x.key, setting)
	}
	w.s.metrics.refInexact.WithLabelValues(w.rm.cfg.EventPrefix, x.ref.Field, x.res.reason).Inc()
	used := ""
	if x.res.v != nil {
		used = lsnText(x.res.v.lsn)
	}
	rec := inexactRecord{Root: w.rm.cfg.Table, Key: key, Version: version, CommitLSN: lsnText(lsn), Reference: x.ref.Field,
		Table: x.ref.Table, RefKey: x.key, UsedLSN: used, Reason: x.res.reason, Setting: setting}
	if w.s.inexactLog.allow(time.Now()) {
		w.log.Warn("reference shown with a version other than the one as of the transaction (history not available)",
			zap.String("root_key", key), zap.Int64("version", version), zap.String("lsn", lsnText(lsn)),
			zap.String("reference", x.ref.Field), zap.String("reference_table", x.ref.Table), zap.String("reference_key", x.key),
			zap.String("shown_version_lsn", used), zap.String("reason", x.res.reason), zap.String("raise", setting))
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	w.extra = append(w.extra, &kgo.Record{Topic: w.s.inexactTopic, Key: []byte(key), Value: b})
	return nil
}

// logLimiter lets one log line through per inexactLogEvery.
type logLimiter struct{ last atomic.Int64 }

func (l *logLimiter) allow(now time.Time) bool {
	last := l.last.Load()
	if now.UnixNano()-last < int64(inexactLogEvery) {
		return false
	}
	return l.last.CompareAndSwap(last, now.UnixNano())
}
