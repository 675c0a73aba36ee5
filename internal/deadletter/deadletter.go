// Package deadletter is the poison-record path every consuming stage shares: the record a stage
// copies to its poison topic (config.PoisonTopic) when it cannot process an input record, the
// headers that name where it came from and why, the error a stage stops with under
// on_poison: stop, and the reading and redriving behind `walhook dlq`.
//
// A dead-lettered record keeps the original key, value, headers and timestamp byte for byte;
// the walhook-dlq-* headers are appended. A redrive strips them and produces the original to its
// source topic and partition, where the stage consumes it again.
//
// It imports config, internal/kafkaconn and franz-go; it must not import a stage package.
package deadletter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/kafkaconn"
)

// Header names a dead-lettered record carries besides the original headers.
const (
	HeaderPrefix    = "walhook-dlq-"
	HeaderStage     = HeaderPrefix + "stage"
	HeaderTopic     = HeaderPrefix + "topic"
	HeaderPartition = HeaderPrefix + "partition"
	HeaderOffset    = HeaderPrefix + "offset"
	HeaderReason    = HeaderPrefix + "reason"
	HeaderTime      = HeaderPrefix + "time"
)

// maxReason bounds the reason header: an error may quote a large value.
const maxReason = 2000

// Record is the poison-topic record of src: its key, value, headers and timestamp, with the
// walhook-dlq-* headers appended. The record is produced to topic by key.
func Record(topic, stage string, src *kgo.Record, reason error, now time.Time) *kgo.Record {
	why := reason.Error()
	if len(why) > maxReason {
		why = why[:maxReason] + "…"
	}
	h := make([]kgo.RecordHeader, 0, len(src.Headers)+6)
	h = append(h, src.Headers...)
	h = append(h,
		kgo.RecordHeader{Key: HeaderStage, Value: []byte(stage)},
		kgo.RecordHeader{Key: HeaderTopic, Value: []byte(src.Topic)},
		kgo.RecordHeader{Key: HeaderPartition, Value: []byte(strconv.FormatInt(int64(src.Partition), 10))},
		kgo.RecordHeader{Key: HeaderOffset, Value: []byte(strconv.FormatInt(src.Offset, 10))},
		kgo.RecordHeader{Key: HeaderReason, Value: []byte(why)},
		kgo.RecordHeader{Key: HeaderTime, Value: []byte(now.UTC().Format(time.RFC3339Nano))},
	)
	return &kgo.Record{Topic: topic, Key: src.Key, Value: src.Value, Headers: h, Timestamp: src.Timestamp}
}

// Entry is one record of a poison topic.
type Entry struct {
	// Partition and Offset place it in the poison topic.
	Partition int32
	Offset    int64
	// Stage, Source, Reason and At are read from its headers.
	Stage  string
	Source Position
	Reason string
	At     time.Time
	// Original is the record as the stage consumed it: topic, partition, key, value, headers
	// and timestamp.
	Original *kgo.Record
}

// Position is a record's place in its topic.
type Position struct {
	Topic     string
	Partition int32
	Offset    int64
}

func (p Position) String() string { return fmt.Sprintf("%s[%d]@%d", p.Topic, p.Partition, p.Offset) }

// Parse reads a poison-topic record; false when it lacks the headers Record sets.
func Parse(r *kgo.Record) (Entry, bool) {
	e := Entry{Partition: r.Partition, Offset: r.Offset}
	var orig []kgo.RecordHeader
	var havePart, haveOff bool
	for _, h := range r.Headers {
		if !strings.HasPrefix(h.Key, HeaderPrefix) {
			orig = append(orig, h)
			continue
		}
		v := string(h.Value)
		switch h.Key {
		case HeaderStage:
			e.Stage = v
		case HeaderTopic:
			e.Source.Topic = v
		case HeaderPartition:
			p, err := strconv.ParseInt(v, 10, 32)
			e.Source.Partition, havePart = int32(p), err == nil
		case HeaderOffset:
			o, err := strconv.ParseInt(v, 10, 64)
			e.Source.Offset, haveOff = o, err == nil
		case HeaderReason:
			e.Reason = v
		case HeaderTime:
			e.At, _ = time.Parse(time.RFC3339Nano, v)
		}
	}
	if e.Source.Topic == "" || !havePart || !haveOff {
		return Entry{}, false
	}
	e.Original = &kgo.Record{Topic: e.Source.Topic, Partition: e.Source.Partition, Key: r.Key, Value: r.Value,
		Headers: orig, Timestamp: r.Timestamp}
	return e, true
}

// Read calls fn for every entry the stage's poison topic holds, in topic order per partition.
func Read(ctx context.Context, cfg *config.Config, stage string, fn func(Entry) error) error {
	topic := cfg.PoisonTopic(stage)
	if topic == "" {
		return unknownStage(stage)
	}
	return kafkaconn.ReadTopic(ctx, cfg.Kafka, topic, func(r *kgo.Record) error {
		if e, ok := Parse(r); ok {
			return fn(e)
		}
		return nil
	})
}

// At reads the entry at partition and offset of the stage's poison topic.
func At(ctx context.Context, cfg *config.Config, stage string, partition int32, offset int64) (Entry, error) {
	topic := cfg.PoisonTopic(stage)
	if topic == "" {
		return Entry{}, unknownStage(stage)
	}
	r, err := kafkaconn.ReadAt(ctx, cfg.Kafka, topic, partition, offset)
	if err != nil {
		return Entry{}, fmt.Errorf("deadletter: %w; `walhook dlq list --stage %s` shows what %s holds", err, stage, topic)
	}
	e, ok := Parse(r)
	if !ok {
		return Entry{}, fmt.Errorf("deadletter: %s[%d]@%d has no %s headers: not written by walhook", topic, partition, offset, HeaderTopic)
	}
	return e, nil
}

// Redrive produces the entries' original records to their source topics and partitions, in
// the order given, and returns how many it produced. cl must partition manually
// (kgo.RecordPartitioner(kgo.ManualPartitioner())), so each record returns to its partition.
func Redrive(ctx context.Context, cl *kgo.Client, entries ...Entry) (int, error) {
	recs := make([]*kgo.Record, 0, len(entries))
	for _, e := range entries {
		o := *e.Original
		o.Headers = append([]kgo.RecordHeader(nil), e.Original.Headers...)
		recs = append(recs, &o)
	}
	if len(recs) == 0 {
		return 0, nil
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return 0, fmt.Errorf("deadletter: redrive: %w", err)
	}
	return len(recs), nil
}

func unknownStage(stage string) error {
	return fmt.Errorf("deadletter: %q is not a stage with a poison topic; use one of %v", stage, config.PoisonStages())
}

// StopError is what a stage returns when on_poison is stop and a record cannot be processed.
type StopError struct {
	Stage  string
	Record Position
	Reason error
}

func (e *StopError) Error() string {
	return fmt.Sprintf("%s: record %s cannot be processed: %v; %s.on_poison is %q, so the stage stopped. "+
		"Fix its producer, then skip the record (it is copied to the stage's poison topic first, so nothing is lost): "+
		"walhook dlq skip --stage %s --topic %s --partition %d --offset %d; or set %s.on_poison: %s",
		e.Stage, e.Record, e.Reason, e.Stage, config.PoisonStop,
		e.Stage, e.Record.Topic, e.Record.Partition, e.Record.Offset, e.Stage, config.PoisonDeadLetter)
}

func (e *StopError) Unwrap() error { return e.Reason }

// Permanent reports whether a produce error is the record's own and will not go away by
// retrying it: the broker (or the client, before sending) refuses that record for good. Such a
// record is dead-lettered after its bounded retries. Other errors (authorization, timeouts,
// fencing) say nothing about the record and are retried with backoff, then stop the stage.
func Permanent(err error) bool {
	for _, e := range []error{kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord, kerr.CorruptMessage,
		kerr.InvalidTimestamp, kerr.InvalidRequiredAcks} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Causes of a dead-lettered record, the cause label of the poison metrics.
const (
	// CauseDecode: the stage could not decode or apply the record.
	CauseDecode = "decode"
	// CauseProduce: the broker refused, for good, what the stage produced for the record.
	CauseProduce = "produce"
)

// NewCounter is a stage's poison metric, walhook_<subsystem>_poison_records_total by source
// topic and cause (CauseDecode, CauseProduce).
func NewCounter(subsystem string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "walhook", Subsystem: subsystem, Name: "poison_records_total",
		Help: "Input records the stage could not process and copied to its poison topic (on_poison: dead_letter), by source topic and cause (decode, produce).",
	}, []string{"topic", "cause"})
}
