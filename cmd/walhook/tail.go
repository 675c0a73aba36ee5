package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/chunked"
	"github.com/walhook/walhook/internal/kafkaconn"
)

type tailFlags struct {
	configFlags
	topic, schemaTopic string
	fromBeginning, end bool
	max                int
	timeout            time.Duration
}

// newTailCommand is `walhook tail`: it prints the records of any walhook topic as JSON lines.
func newTailCommand() *cobra.Command {
	var f tailFlags
	cmd := &cobra.Command{
		Use:   "tail --topic T [--from-beginning] [--end] [--max N]",
		Short: "Print the records of a walhook topic as JSON lines",
		Long: `tail decodes change records, transaction markers, snapshots and compliance records (Confluent wire format
through the schema registry, Avro single-object encoding through the schema topic, or plain JSON) and
prints one JSON object per record: topic, partition, offset, key, headers, schema and value. Values are
plain JSON: a nullable column is its value or null, timestamps are ISO 8601 text, a json column is
embedded. It reads committed records only.

Kafka settings come from the config when there is one (--config, $WALHOOK_CONFIG, ./walhook.yaml),
else from --brokers and --registry (or $WALHOOK_BROKERS and $WALHOOK_REGISTRY_URL).`,
		Example: `  walhook tail --topic walhook.snapshots.incident.instance --from-beginning
  walhook tail --topic walhook.changes.incident.instance --from-beginning --end`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTail(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.topic, "topic", "", "topic to read (required)")
	fl.BoolVar(&f.fromBeginning, "from-beginning", false, "start at the oldest record instead of the end")
	fl.BoolVar(&f.end, "end", false, "exit at the end of the topic as it is when tail starts, instead of waiting for more")
	fl.StringVar(&f.schemaTopic, "schema-topic", "", `schema topic of single-object values (default: topic prefix + "schemas")`)
	fl.IntVar(&f.max, "max", 0, "exit after this many records (0: no limit)")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "give up when Kafka does not answer within this long")
	_ = cmd.MarkFlagRequired("topic")
	return cmd
}

func runTail(ctx context.Context, out, errOut io.Writer, f tailFlags) error {
	cfg, _, err := f.loadIfAny()
	if err != nil {
		return err
	}
	if len(cfg.Kafka.Brokers) == 0 {
		return errors.New("tail: no brokers: pass --brokers host:port, set WALHOOK_BROKERS, or use a config (--config, $WALHOOK_CONFIG)")
	}
	opts, err := kafkaconn.Opts(cfg.Kafka)
	if err != nil {
		return err
	}
	ends, err := tailPartitions(ctx, opts, cfg.Kafka, f)
	if err != nil {
		return err
	}
	start := kgo.NewOffset().AtEnd()
	if f.fromBeginning {
		start = kgo.NewOffset().AtStart()
	}
	// Control records (transaction markers) are kept, not printed: they tell where a partition
	// stands, so --end can stop at the end even when the last entry is a marker.
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(f.topic), kgo.ConsumeResetOffset(start),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(), kgo.FetchMaxWait(500*time.Millisecond))...)
	if err != nil {
		return fmt.Errorf("tail: kafka client: %w", err)
	}
	defer cl.Close()
	dec, err := newTailDecoder(cl, cfg.SchemaRegistry, f.schemaTopic, cfg.Kafka.TopicPrefix, errOut)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(out)
	defer w.Flush()
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)

	// With --end, a partition is done once tail has read up to its end offset at start, or up
	// to its last stable offset (what follows belongs to a transaction still open).
	pending := map[int32]int64{}
	if f.end {
		for p, end := range ends {
			if !f.fromBeginning || end.end <= end.start {
				continue // from the end there is nothing to wait for
			}
			pending[p] = end.end
		}
		if len(pending) == 0 {
			return nil
		}
	}
	n := 0
	asm := chunked.NewAssembler(false)
	for f.max == 0 || n < f.max {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) { ferr = errors.Join(ferr, fmt.Errorf("%s[%d]: %w", t, p, err)) })
		if ferr != nil {
			return fmt.Errorf("tail: fetch %s: %w", f.topic, ferr)
		}
		done := false
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			for _, rec := range p.Records {
				if end, ok := pending[rec.Partition]; ok && rec.Offset+1 >= end {
					delete(pending, rec.Partition)
				}
			}
			lastRaw := int64(-1)
			if len(p.Records) > 0 {
				lastRaw = p.Records[len(p.Records)-1].Offset
			}
			// Records above kafka.max_record_bytes are chunk groups: one line per whole record.
			for _, rec := range asm.Records(p.Topic, p.Partition, p.Records) {
				if rec.Attrs.IsControl() || done {
					continue
				}
				if err := enc.Encode(dec.line(ctx, rec)); err != nil {
					ferr = fmt.Errorf("tail: write: %w", err)
					done = true
				}
				if n++; f.max > 0 && n >= f.max {
					done = true
				}
			}
			if end, ok := pending[p.Partition]; ok && lastRaw >= 0 && p.LastStableOffset >= 0 && p.LastStableOffset < end &&
				lastRaw+1 >= p.LastStableOffset {
				delete(pending, p.Partition)
			}
		})
		if ferr != nil {
			return ferr
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("tail: write: %w", err)
		}
		if done || (f.end && len(pending) == 0) {
			return nil
		}
	}
	return nil
}

type offsetRange struct{ start, end int64 }

// tailPartitions checks, within --timeout, that Kafka answers and the topic exists, and
// returns each partition's offsets, so tail fails with the reason rather than waiting silently.
func tailPartitions(ctx context.Context, opts []kgo.Opt, k config.Kafka, f tailFlags) (map[int32]offsetRange, error) {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("tail: kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	if err := kafkaconn.Ping(ctx, cl, k.Brokers); err != nil {
		return nil, fmt.Errorf("tail: %w (waited %s, --timeout)", err, f.timeout)
	}
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("tail: list the topics of %s: %w", strings.Join(k.Brokers, ","), err)
	}
	detail, ok := topics[f.topic]
	if !ok || detail.Err != nil {
		return nil, fmt.Errorf("tail: topic %s does not exist on %s; %s", f.topic, strings.Join(k.Brokers, ","), topicHint(topics, k.TopicPrefix))
	}
	starts, err := adm.ListStartOffsets(ctx, f.topic)
	if err != nil {
		return nil, fmt.Errorf("tail: offsets of %s: %w", f.topic, err)
	}
	endOffsets, err := adm.ListEndOffsets(ctx, f.topic)
	if err != nil {
		return nil, fmt.Errorf("tail: offsets of %s: %w", f.topic, err)
	}
	out := map[int32]offsetRange{}
	endOffsets.Each(func(o kadm.ListedOffset) {
		s, _ := starts.Lookup(o.Topic, o.Partition)
		out[o.Partition] = offsetRange{start: s.Offset, end: o.Offset}
	})
	return out, nil
}

func topicHint(topics kadm.TopicDetails, prefix string) string {
	var ours []string
	for name := range topics {
		if strings.HasPrefix(name, prefix) {
			ours = append(ours, name)
		}
	}
	if len(ours) == 0 {
		return fmt.Sprintf("no topic starts with %q yet: the stages create them when they start", prefix)
	}
	slices.Sort(ours)
	return "walhook's topics there: " + strings.Join(ours, ", ")
}

// tailDecoder resolves each value's framing and decodes it.
type tailDecoder struct {
	confluent avro.Registry // nil without a registry
	topicReg  avro.Registry
	plain     *avroJSON
	errOut    io.Writer
	hinted    bool // the missing-registry hint was printed
}

func newTailDecoder(cl *kgo.Client, r config.SchemaRegistry, schemaTopic, prefix string, errOut io.Writer) (*tailDecoder, error) {
	if schemaTopic == "" {
		schemaTopic = prefix + "schemas"
	}
	d := &tailDecoder{topicReg: avro.NewTopicRegistry(cl, schemaTopic), plain: newAvroJSON(), errOut: errOut}
	if r.URL != "" {
		opts := []sr.ClientOpt{sr.URLs(r.URL)}
		if r.Username != "" {
			opts = append(opts, sr.BasicAuth(r.Username, r.Password))
		}
		c, err := sr.NewClient(opts...)
		if err != nil {
			return nil, fmt.Errorf("tail: schema registry %s: %w", r.URL, err)
		}
		d.confluent = avro.NewConfluentRegistry(c)
	}
	return d, nil
}

// tailLine is one printed record.
type tailLine struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Timestamp string            `json:"timestamp"`
	Key       *string           `json:"key"`
	Headers   map[string]string `json:"headers,omitempty"`
	Encoding  string            `json:"encoding"` // confluent, single-object, json, binary, tombstone
	Schema    string            `json:"schema,omitempty"`
	Value     any               `json:"value"`
	Error     string            `json:"error,omitempty"`
}

const noRegistryHint = "no schema registry: pass --registry URL, set WALHOOK_REGISTRY_URL, or set schema_registry.url in the config"

func (d *tailDecoder) line(ctx context.Context, rec *kgo.Record) tailLine {
	l := tailLine{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset,
		Timestamp: rec.Timestamp.UTC().Format("2006-01-02T15:04:05.000Z")}
	if rec.Key != nil {
		k := string(rec.Key)
		l.Key = &k
	}
	if len(rec.Headers) > 0 {
		l.Headers = make(map[string]string, len(rec.Headers))
		for _, h := range rec.Headers {
			l.Headers[h.Key] = string(h.Value)
		}
	}
	if err := chunked.Err(rec); err != nil {
		l.Encoding, l.Value, l.Error = "chunk", base64.StdEncoding.EncodeToString(rec.Value), err.Error()
		return l
	}
	v := rec.Value
	var reg avro.Registry
	switch {
	case v == nil:
		l.Encoding = "tombstone"
		return l
	case len(v) >= 5 && v[0] == 0x00 && d.confluent != nil:
		l.Encoding, reg = "confluent", d.confluent
	case len(v) >= 5 && v[0] == 0x00:
		// Confluent wire format, but nothing to resolve the schema id with.
		l.Encoding, l.Value = "confluent", base64.StdEncoding.EncodeToString(v)
		l.Error = fmt.Sprintf("Avro in the Confluent wire format (schema id %d) and %s", binary.BigEndian.Uint32(v[1:5]), noRegistryHint)
		if !d.hinted {
			d.hinted = true
			fmt.Fprintf(d.errOut, "walhook tail: %s is Avro with schema ids of a registry; %s\n", rec.Topic, noRegistryHint)
		}
		return l
	case len(v) >= 10 && v[0] == 0xC3 && v[1] == 0x01:
		l.Encoding, reg = "single-object", d.topicReg
	case json.Valid(v):
		l.Encoding, l.Value = "json", json.RawMessage(v)
		return l
	default:
		l.Encoding, l.Value = "binary", base64.StdEncoding.EncodeToString(v)
		return l
	}
	text, body, err := reg.Resolve(ctx, v)
	if err == nil {
		l.Schema, l.Value, err = d.decode(text, body)
	}
	if err != nil {
		l.Error, l.Value = err.Error(), base64.StdEncoding.EncodeToString(v)
	}
	return l
}

// decode turns an Avro body into plain JSON: a walhook.Snapshot with its payload embedded,
// anything else (change records, markers, compliance records) through avroJSON.
func (d *tailDecoder) decode(text string, body []byte) (string, any, error) {
	s, err := avro.ParseSchema(text)
	if err != nil {
		return "", nil, err
	}
	if s.FullName == "walhook.Snapshot" {
		snap, err := avro.DecodeSnapshot(body)
		if err != nil {
			return s.FullName, nil, err
		}
		var payload any = json.RawMessage(snap.Payload)
		if !json.Valid(snap.Payload) {
			payload = string(snap.Payload)
		}
		return s.FullName, map[string]any{
			"root_type": snap.RootType, "event_prefix": snap.EventPrefix, "key": snap.Key, "tenant": snap.Tenant,
			"event_type": snap.EventType, "verb": snap.Verb.String(), "version": snap.Version, "commit_lsn": snap.CommitLSN,
			"commit_time": snap.CommitTime.UTC().Format("2006-01-02T15:04:05.000000Z"), "payload": payload,
		}, nil
	}
	j, err := d.plain.decode(text, body)
	if err != nil {
		return s.FullName, nil, fmt.Errorf("decode %s: %w", s.FullName, err)
	}
	return s.FullName, j, nil
}
