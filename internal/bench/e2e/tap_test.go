package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/kafkaconn"
)

// tap reads the change and snapshot topics beside the stages (read uncommitted, as the sink
// does) to split the latency by hop: commit → change record produced by cdc (its Kafka
// timestamp), → snapshot produced by bubbleup, → snapshot fetchable. It joins a change record to
// its snapshot by (commit LSN, root key). It costs CPU the stages would otherwise have, so it is
// off unless -e2e.tap is given.
type tap struct {
	cl                   *kgo.Client
	changeTopic, snapTop string

	mu       sync.Mutex // guards the fields below; the poll goroutine writes, stats reads
	changeAt map[string]time.Time
	from, to int64
	cdcLat   []time.Duration // commit → change record timestamp
	buLat    []time.Duration // commit → snapshot record timestamp
	snapLat  []time.Duration // commit → snapshot fetched
}

func startTap(cfg *config.Config) (*tap, error) {
	root := cfg.Model.Roots[0]
	t := &tap{changeTopic: cfg.Kafka.ChangeTopic(root), snapTop: cfg.Kafka.SnapshotTopic(root),
		changeAt: map[string]time.Time{}, from: 1 << 62}
	opts, err := kafkaconn.Opts(cfg.Kafka)
	if err != nil {
		return nil, err
	}
	t.cl, err = kgo.NewClient(append(opts, kgo.ConsumeTopics(t.changeTopic, t.snapTop),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.FetchMaxWait(time.Second))...)
	return t, err
}

// run polls until ctx is done, then closes the client.
func (t *tap) run(ctx context.Context) {
	defer t.cl.Close()
	for ctx.Err() == nil {
		fs := t.cl.PollFetches(ctx)
		now := time.Now()
		fs.EachRecord(func(r *kgo.Record) { t.record(now, r) })
	}
}

func (t *tap) window(from, to int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.from, t.to = from, to
}

func (t *tap) record(now time.Time, r *kgo.Record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r.Topic == t.changeTopic {
		for _, h := range r.Headers {
			if h.Key == "walhook-lsn" {
				t.changeAt[string(h.Value)+"/"+string(r.Key)] = r.Timestamp
			}
		}
		return
	}
	_, body, err := avro.SplitConfluent(r.Value)
	if err != nil {
		return
	}
	s, err := avro.DecodeSnapshot(body)
	if err != nil {
		return
	}
	var p payload
	if json.Unmarshal(s.Payload, &p) != nil {
		return
	}
	us, err := strconv.ParseInt(p.ResolutionNotes, 10, 64)
	if err != nil || us < t.from || (t.to != 0 && us >= t.to) {
		return
	}
	commit := time.UnixMicro(us)
	join := fmt.Sprintf("%X/%X/%s", s.CommitLSN>>32, uint32(s.CommitLSN), s.Key)
	if at, ok := t.changeAt[join]; ok {
		t.cdcLat = append(t.cdcLat, at.Sub(commit))
		delete(t.changeAt, join)
	}
	t.buLat = append(t.buLat, r.Timestamp.Sub(commit))
	t.snapLat = append(t.snapLat, now.Sub(commit))
}

// hop is one cumulative latency's distribution.
type hop struct {
	name          string
	n             int
	p50, p99, max time.Duration
}

func (t *tap) hops() []hop {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []hop
	for _, h := range []struct {
		name string
		lat  []time.Duration
	}{{"commit→change produced (cdc)", t.cdcLat}, {"commit→snapshot produced (bubbleup)", t.buLat}, {"commit→snapshot fetched", t.snapLat}} {
		lat := slices.Clone(h.lat)
		slices.Sort(lat)
		x := hop{name: h.name, n: len(lat), p50: quantile(lat, .5), p99: quantile(lat, .99)}
		if len(lat) > 0 {
			x.max = lat[len(lat)-1]
		}
		out = append(out, x)
	}
	return out
}
