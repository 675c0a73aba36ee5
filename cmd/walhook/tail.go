package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/kafkaconn"
)

type tailFlags struct {
	topic, config, brokers, registry, schemaTopic string
	fromBeginning                                 bool
	max                                           int
}

// newTailCommand is `walhook tail`: it prints the records of any walhook topic as JSON lines.
func newTailCommand() *cobra.Command {
	var f tailFlags
	cmd := &cobra.Command{
		Use:   "tail --topic T [--from-beginning] [--config FILE | --brokers B --registry URL]",
		Short: "Print the records of a walhook topic as JSON lines",
		Long: "Decodes change records, markers, snapshots and compliance records (Confluent wire format through the " +
			"schema registry, Avro single-object encoding through the schema topic, or plain JSON) and prints one JSON " +
			"object per record: topic, partition, offset, key, headers, schema and value. Reads committed records only.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runTail(cmd.Context(), cmd.OutOrStdout(), f) },
	}
	cmd.Flags().StringVar(&f.topic, "topic", "", "topic to read (required)")
	cmd.Flags().BoolVar(&f.fromBeginning, "from-beginning", false, "start at the oldest record instead of the end")
	cmd.Flags().StringVar(&f.config, "config", "", "walhook config file (brokers, TLS, SASL, registry, topic prefix)")
	cmd.Flags().StringVar(&f.brokers, "brokers", "", "comma-separated host:port, instead of --config")
	cmd.Flags().StringVar(&f.registry, "registry", "", "schema registry URL, instead of --config")
	cmd.Flags().StringVar(&f.schemaTopic, "schema-topic", "", `schema topic of single-object values (default: topic prefix + "schemas")`)
	cmd.Flags().IntVar(&f.max, "max", 0, "exit after this many records (0: run until interrupted)")
	_ = cmd.MarkFlagRequired("topic")
	return cmd
}

func runTail(ctx context.Context, out io.Writer, f tailFlags) error {
	kcfg, regCfg, err := tailConfig(f)
	if err != nil {
		return err
	}
	opts, err := kafkaconn.Opts(kcfg)
	if err != nil {
		return err
	}
	start := kgo.NewOffset().AtEnd()
	if f.fromBeginning {
		start = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(f.topic), kgo.ConsumeResetOffset(start),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(500*time.Millisecond))...)
	if err != nil {
		return fmt.Errorf("tail: kafka client: %w", err)
	}
	defer cl.Close()
	dec, err := newTailDecoder(cl, regCfg, f.schemaTopic, kcfg.TopicPrefix)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(out)
	defer w.Flush()
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	n := 0
	for f.max == 0 || n < f.max {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) { ferr = errors.Join(ferr, fmt.Errorf("%s[%d]: %w", t, p, err)) })
		if ferr != nil {
			return fmt.Errorf("tail: fetch %s: %w; check --brokers/--config and that the topic exists", f.topic, ferr)
		}
		for _, rec := range fetches.Records() {
			if err := enc.Encode(dec.line(ctx, rec)); err != nil {
				return fmt.Errorf("tail: write: %w", err)
			}
			if n++; f.max > 0 && n >= f.max {
				break
			}
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("tail: write: %w", err)
		}
	}
	return nil
}

// tailConfig takes Kafka and registry settings from --config, overridden by --brokers and
// --registry.
func tailConfig(f tailFlags) (config.Kafka, config.SchemaRegistry, error) {
	var k config.Kafka
	var r config.SchemaRegistry
	if f.config != "" {
		cfg, err := config.Load(f.config)
		if err != nil {
			return k, r, err
		}
		k, r = cfg.Kafka, cfg.SchemaRegistry
	} else {
		k.TopicPrefix = config.DefaultTopicPrefix
	}
	if f.brokers != "" {
		k.Brokers = strings.Split(f.brokers, ",")
	}
	if f.registry != "" {
		r = config.SchemaRegistry{URL: f.registry}
	}
	if len(k.Brokers) == 0 {
		return k, r, errors.New("tail: no brokers: pass --brokers host:port or --config FILE")
	}
	return k, r, nil
}

// tailDecoder resolves each value's framing and decodes it.
type tailDecoder struct {
	confluent avro.Registry // nil without a registry
	topicReg  avro.Registry
	codecs    map[string]*goavro.Codec
}

func newTailDecoder(cl *kgo.Client, r config.SchemaRegistry, schemaTopic, prefix string) (*tailDecoder, error) {
	if schemaTopic == "" {
		schemaTopic = prefix + "schemas"
	}
	d := &tailDecoder{topicReg: avro.NewTopicRegistry(cl, schemaTopic), codecs: map[string]*goavro.Codec{}}
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
	v := rec.Value
	var reg avro.Registry
	switch {
	case v == nil:
		l.Encoding = "tombstone"
		return l
	case len(v) >= 5 && v[0] == 0x00 && d.confluent != nil:
		l.Encoding, reg = "confluent", d.confluent
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

// decode turns an Avro body into JSON: a walhook.Snapshot with its payload as JSON, anything else
// in the Avro JSON encoding (unions as {"type": value}, timestamps as numbers).
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
			"commit_time": snap.CommitTime.Format(time.RFC3339Nano), "payload": payload,
		}, nil
	}
	codec := d.codecs[text]
	if codec == nil {
		if codec, err = goavro.NewCodec(text); err != nil {
			return s.FullName, nil, err
		}
		d.codecs[text] = codec
	}
	native, _, err := codec.NativeFromBinary(body)
	if err != nil {
		return s.FullName, nil, fmt.Errorf("decode %s: %w", s.FullName, err)
	}
	j, err := codec.TextualFromNative(nil, native)
	if err != nil {
		return s.FullName, nil, fmt.Errorf("decode %s: %w", s.FullName, err)
	}
	return s.FullName, json.RawMessage(j), nil
}
