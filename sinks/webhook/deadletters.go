package webhook

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/chunked"
	"github.com/walhook/walhook/internal/kafkaconn"
)

// DeadLetterKind names what a dead letter is a failure of. The webhook sink's deliveries are the
// only kind today; stages that dead-letter records of their own add kinds beside it.
const DeadLetterKind = "webhook_delivery"

// DeadLetter is one record of the webhook dead-letter topic: a delivery that exhausted its
// attempts, was refused permanently, or met a 410.
type DeadLetter struct {
	Partition int32
	Offset    int64
	// Time is the record's timestamp, when it was dead-lettered.
	Time time.Time
	Job  Job
}

// ID names the dead letter by its place in the topic: "<partition>-<offset>".
func (d DeadLetter) ID() string {
	return strconv.FormatInt(int64(d.Partition), 10) + "-" + strconv.FormatInt(d.Offset, 10)
}

// WebhookID is the webhook-id its delivery had and a redrive keeps.
func (d DeadLetter) WebhookID() string {
	s := d.Job.Snapshot
	return MessageID(d.Job.Subscription, s.RootType, s.Key, s.Version)
}

// ErrUnknownDeadLetter: no dead letter has the given id.
var ErrUnknownDeadLetter = errors.New("webhook: unknown dead letter")

// ParseDeadLetterID reads an ID.
func ParseDeadLetterID(id string) (int32, int64, error) {
	ps, os, ok := strings.Cut(id, "-")
	p, err1 := strconv.ParseInt(ps, 10, 32)
	o, err2 := strconv.ParseInt(os, 10, 64)
	if !ok || err1 != nil || err2 != nil || p < 0 || o < 0 {
		return 0, 0, invalid("id", "%q is not a dead letter id; ids are <partition>-<offset>, e.g. 2-17, as the dead-letter list shows them", id)
	}
	return int32(p), o, nil
}

// DeadLetterOf decodes a record of the dead-letter topic; false when it is not a delivery job.
func DeadLetterOf(r *kgo.Record) (DeadLetter, bool) {
	j, err := decodeJobRecord(r)
	if err != nil {
		return DeadLetter{}, false
	}
	return DeadLetter{Partition: r.Partition, Offset: r.Offset, Time: r.Timestamp, Job: j}, true
}

// ReadDeadLetters calls fn for every dead letter the topic holds, in topic order per partition.
// Records that are not delivery jobs are skipped.
func ReadDeadLetters(ctx context.Context, cfg config.Kafka, fn func(DeadLetter) error) error {
	return ReadTopic(ctx, cfg, cfg.WebhookDeadLetterTopic(), func(r *kgo.Record) error {
		if d, ok := DeadLetterOf(r); ok {
			return fn(d)
		}
		return nil
	})
}

// DeadLetterAt reads the dead letter at partition and offset; ErrUnknownDeadLetter when the
// topic does not hold it (never written, or deleted by retention).
func DeadLetterAt(ctx context.Context, cfg config.Kafka, partition int32, offset int64) (DeadLetter, error) {
	topic := cfg.WebhookDeadLetterTopic()
	unknown := fmt.Errorf("%w %d-%d; the dead-letter list shows the ids %s holds", ErrUnknownDeadLetter, partition, offset, topic)
	r, err := kafkaconn.ReadAt(ctx, cfg, topic, partition, offset)
	if errors.Is(err, kafkaconn.ErrNoRecord) {
		return DeadLetter{}, unknown
	}
	if err != nil {
		return DeadLetter{}, err
	}
	if d, ok := DeadLetterOf(r); ok {
		return d, nil
	}
	return DeadLetter{}, unknown
}

// Redrive asks the sink to deliver the dead letters again: attempt 1, the same webhook-id. It
// returns how many it requested.
func Redrive(ctx context.Context, cl *kgo.Client, cfg config.Kafka, dls ...DeadLetter) (int, error) {
	recs := make([]*kgo.Record, 0, len(dls))
	for _, d := range dls {
		j := d.Job
		j.Kind, j.Attempt, j.Due, j.LastError, j.LastStatus, j.DeadAt = "replay", 1, time.Time{}, "", 0, time.Time{}
		recs = append(recs, RequestRecord(cfg, j))
	}
	if len(recs) == 0 {
		return 0, nil
	}
	return len(recs), cl.ProduceSync(ctx, chunked.Expand(recs, kafkaconn.RecordLimit(cfg))...).FirstErr()
}

// RedriveMatching redrives every dead letter the topic holds for which match is true.
func RedriveMatching(ctx context.Context, cl *kgo.Client, cfg config.Kafka, match func(DeadLetter) bool) (int, error) {
	var dls []DeadLetter
	err := ReadDeadLetters(ctx, cfg, func(d DeadLetter) error {
		if match(d) {
			dls = append(dls, d)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return Redrive(ctx, cl, cfg, dls...)
}
