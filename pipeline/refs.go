package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// refTables is the local copy of every cross-service reference table, read in full from the
// reference topics by one goroutine (refReader.run) and read by the partition workers.
//
// Lock order: mu, then re.mu (mark calls re.covered); nothing else is called while holding mu.
type refTables struct {
	mu      sync.Mutex
	rows    map[string]map[string]*row // table → key text → row; guarded by mu
	marks   map[string][]uint64        // table → per-partition watermark LSN; guarded by mu
	changed chan struct{}              // closed and replaced when a watermark advances; guarded by mu
	re      *refChanges                // changes of tables that re-emit (reemit.go); nil for none; set before the reader starts
}

func newRefTables(partitions map[string]int) *refTables {
	t := &refTables{rows: map[string]map[string]*row{}, marks: map[string][]uint64{}, changed: make(chan struct{})}
	for table, n := range partitions {
		t.rows[table] = map[string]*row{}
		t.marks[table] = make([]uint64, n)
	}
	return t
}

// get returns the row of table with key, nil when missing.
func (t *refTables) get(table, key string) *row {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rows[table][key]
}

func (t *refTables) put(table, key string, r *row) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r == nil {
		delete(t.rows[table], key)
		return
	}
	t.rows[table][key] = r
}

func (t *refTables) mark(table string, partition int32, lsn uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.marks[table]
	if int(partition) >= len(m) {
		grown := make([]uint64, partition+1)
		copy(grown, m)
		m = grown
		t.marks[table] = m
	}
	if lsn > m[partition] {
		m[partition] = lsn
		close(t.changed)
		t.changed = make(chan struct{})
		t.re.covered(table, slices.Min(m))
	}
}

// caughtUp reports whether every partition of table has a watermark at or above lsn, and
// otherwise returns the channel closed at the next advance.
func (t *refTables) caughtUp(table string, lsn uint64) (bool, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range t.marks[table] {
		if m < lsn {
			return false, t.changed
		}
	}
	return true, nil
}

// wait blocks until every partition of every table has seen lsn, or ctx ends.
func (t *refTables) wait(ctx context.Context, tables []string, lsn uint64) error {
	for _, table := range tables {
		for {
			ok, ch := t.caughtUp(table, lsn)
			if ok {
				break
			}
			select {
			case <-ch:
			case <-ctx.Done():
				return fmt.Errorf("waiting for reference table %s to reach LSN %s: %w", table, lsnText(lsn), context.Cause(ctx))
			}
		}
	}
	return nil
}

// refReader consumes the reference topics from their start, without a group, into refTables.
type refReader struct {
	cl     *kgo.Client
	tables map[string]string // topic → table
	refs   *refTables
	dec    *decoder
	log    *zap.Logger
}

// run consumes until ctx ends. It owns cl's polling.
func (r *refReader) run(ctx context.Context) error {
	for {
		fs := r.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var errs []error
		fs.EachError(func(topic string, p int32, err error) {
			errs = append(errs, fmt.Errorf("reference topic %s[%d]: %w", topic, p, err))
		})
		if len(errs) > 0 {
			r.log.Warn("fetching reference topics", zap.Error(errors.Join(errs...)))
		}
		var err error
		fs.EachRecord(func(rec *kgo.Record) {
			if err == nil {
				err = r.apply(ctx, rec)
			}
		})
		if err != nil {
			return err
		}
	}
}

func (r *refReader) apply(ctx context.Context, rec *kgo.Record) error {
	table := r.tables[rec.Topic]
	if rec.Value == nil { // a tombstone of the compacted topic
		r.refs.put(table, string(rec.Key), nil)
		return nil
	}
	in, err := r.dec.decode(ctx, rec)
	if err != nil {
		return fmt.Errorf("reference topic %s partition %d offset %d: %w", rec.Topic, rec.Partition, rec.Offset, err)
	}
	switch in.kind {
	case kindWatermark:
		r.refs.mark(table, rec.Partition, in.watermark.CommitLSN)
	case kindChange:
		c := in.change
		r.refs.re.log(table, string(rec.Key), c)
		if c.Op == opDelete || c.After == nil {
			r.refs.put(table, string(rec.Key), nil)
			return nil
		}
		r.refs.put(table, string(rec.Key), rowFrom(c.After, c.Unchanged, r.refs.get(table, string(rec.Key))))
	}
	return nil
}
