// Command refbench is the reference-store benchmark of `make bench` (issue 13): it fills a
// reference topic with N session rows (default 5,000,000), then starts `walhook bubbleup` as a
// new member (a separate process, fresh state directory, a new group) and measures its
// time-to-ready (process start until it committed the snapshot of an incident that references one
// of those sessions, which needs the whole reference topic read) and its peak RSS, for the build
// of this tree and optionally a second binary (-alt, e.g. a baseline build), alternating.
//
//	go run ./internal/bench/refbench [-sessions 5000000] [-runs 1] [-alt /path/to/walhook] [-brokers host:port]
//
// Without -brokers it runs kfake in its own process (the member is a process of its own, so the
// broker's memory is not the member's). Everything it starts is stopped before it returns.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/embedkafka"
	"github.com/walhook/walhook/internal/kafkaconn"
)

type options struct {
	sessions, runs, partitions int
	brokers, bin, alt          string
	keep                       bool
}

func main() {
	var o options
	flag.IntVar(&o.sessions, "sessions", 5_000_000, "session rows in the reference topic")
	flag.IntVar(&o.runs, "runs", 1, "new members measured per binary, alternating")
	flag.IntVar(&o.partitions, "partitions", 6, "partitions of the topics")
	flag.StringVar(&o.brokers, "brokers", "", "an existing Kafka cluster (host:port) instead of kfake in this process")
	flag.StringVar(&o.bin, "bin", "", "the walhook binary to measure instead of building ./cmd/walhook")
	flag.StringVar(&o.alt, "alt", "", "a second walhook binary (a baseline build) measured in the same run")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (configs, logs, state)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "refbench:", err)
		os.Exit(1)
	}
}

func step(s string) { fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), s) }

func run(ctx context.Context, o options) error {
	work, err := os.MkdirTemp("", "refbench-")
	if err != nil {
		return err
	}
	if o.keep {
		step("work directory " + work)
	} else {
		defer os.RemoveAll(work)
	}
	walhook := o.bin
	if walhook == "" {
		walhook = filepath.Join(work, "walhook")
		step("building walhook")
		if out, err := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", walhook, "github.com/walhook/walhook/cmd/walhook").CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/walhook: %v\n%s", err, out)
		}
	}
	brokers := o.brokers
	if brokers == "" {
		// Never compacting: the topics hold each row once.
		st, err := embedkafka.Start(ctx, embedkafka.Options{RegistryPort: -1, CleanerBackoff: embedkafka.NoCompaction})
		if err != nil {
			return err
		}
		defer st.Close()
		brokers = st.Brokers()[0]
	}
	cfg := &config.Config{}
	cfg.Kafka.Brokers = []string{brokers}
	cfg.Kafka.TopicPrefix = fmt.Sprintf("refbench%d.", time.Now().UnixNano())
	cfg.Kafka.Partitions = int32(o.partitions)
	cfg.Postgres.URL = "postgres://unused"
	var model struct {
		Model config.Model `yaml:"model"`
	}
	if err := yaml.Unmarshal([]byte(demo.ModelYAML), &model); err != nil {
		return err
	}
	cfg.Model = model.Model
	cfg.SetDefaults()
	w, err := newWriter(ctx, cfg)
	if err != nil {
		return err
	}
	defer w.cl.Close()
	step(fmt.Sprintf("writing %d session rows to %s", o.sessions, cfg.Kafka.ReferenceTopic("session.instance")))
	began := time.Now()
	if err := w.sessions(ctx, o.sessions); err != nil {
		return err
	}
	step(fmt.Sprintf("written in %v", time.Since(began).Round(time.Millisecond)))

	type bin struct{ name, path string }
	bins := []bin{{"this build", walhook}}
	if o.alt != "" {
		bins = append(bins, bin{"alt " + o.alt, o.alt})
	}
	results := map[string][]result{}
	member := 0
	for i := 1; i <= o.runs; i++ {
		for _, b := range bins {
			member++
			// One more incident referencing a session in the middle; the new group processes the
			// change topic from its start, so it commits member snapshots in all.
			if err := w.incident(ctx, member, o.sessions/2+member); err != nil {
				return err
			}
			step(fmt.Sprintf("run %d: new member, %s", i, b.name))
			r, err := measure(ctx, b.path, work, cfg, member)
			if err != nil {
				return err
			}
			step(fmt.Sprintf("  ready in %v, peak RSS %.0f MiB (RSS 5 s after ready %.0f MiB), state dir %.0f MiB, CPU %.1fs",
				r.ready.Round(time.Millisecond), float64(r.peakKiB)/1024, float64(r.afterKiB)/1024, float64(r.stateBytes)/(1<<20), r.cpu.Seconds()))
			results[b.name] = append(results[b.name], r)
		}
	}
	fmt.Printf("Reference store benchmark: a new bubble-up member, %d session rows in the reference topic (%d partitions), %d CPUs, %s\n",
		o.sessions, o.partitions, runtime.NumCPU(), runtime.Version())
	for _, b := range bins {
		for i, r := range results[b.name] {
			fmt.Printf("  %-40s run %d: time-to-ready %7.1f s, peak RSS %6.0f MiB, RSS after %6.0f MiB, state dir %6.0f MiB, CPU %6.1f s\n",
				b.name, i+1, r.ready.Seconds(), float64(r.peakKiB)/1024, float64(r.afterKiB)/1024, float64(r.stateBytes)/(1<<20), r.cpu.Seconds())
		}
	}
	return nil
}

// result is one new member's measurement.
type result struct {
	ready      time.Duration
	peakKiB    int64 // VmHWM
	afterKiB   int64 // VmRSS 5 s after ready
	stateBytes int64
	cpu        time.Duration
}

// measure starts bin as a new bubble-up member (its own group and state directory) and waits
// until it has committed want snapshots.
func measure(ctx context.Context, bin, work string, cfg *config.Config, want int) (result, error) {
	httpAddr, err := freeAddr()
	if err != nil {
		return result{}, err
	}
	name := fmt.Sprintf("member%d", want)
	state := filepath.Join(work, name+"-state")
	cfgPath := filepath.Join(work, name+".yaml")
	y := fmt.Sprintf(`postgres:
  url: postgres://unused
kafka:
  brokers: [%q]
  topic_prefix: %q
  partitions: %d
bubbleup:
  group: %s
  state_dir: %q
http:
  listen: %q
log:
  level: warn
%s`, cfg.Kafka.Brokers[0], cfg.Kafka.TopicPrefix, cfg.Kafka.Partitions, name, state, httpAddr, demo.ModelYAML)
	if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
		return result{}, err
	}
	logPath := filepath.Join(work, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return result{}, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "bubbleup", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	kill := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	var r result
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for r.ready == 0 {
		select {
		case <-ctx.Done():
			kill()
			return result{}, ctx.Err()
		case err := <-exited:
			return result{}, fmt.Errorf("walhook bubbleup exited early (%v); log %s:\n%s", err, logPath, tail(logPath))
		case <-tick.C:
		}
		if snapshots("http://"+httpAddr+"/metrics") >= float64(want) {
			r.ready = time.Since(start)
		}
		if time.Since(start) > 30*time.Minute {
			kill()
			return result{}, fmt.Errorf("not ready in 30 minutes; log %s", logPath)
		}
	}
	r.stateBytes = dirSize(state)
	time.Sleep(5 * time.Second) // the heap after the catch-up, once the runtime returned what it could
	r.peakKiB, r.afterKiB = procStatus(cmd.Process.Pid, "VmHWM:"), procStatus(cmd.Process.Pid, "VmRSS:")
	kill()
	r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return r, nil
}

// writer produces records the way the cdc stage does.
type writer struct {
	cfg            *config.Config
	cl             *kgo.Client
	reg            avro.Registry
	session        *avro.ChangeSchema
	incidentSchema *avro.ChangeSchema
	txnEnd         *avro.Schema
	mark           *avro.Schema
	lsn            uint64
}

func newWriter(ctx context.Context, cfg *config.Config) (*writer, error) {
	opts, err := kafkaconn.Opts(cfg.Kafka)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(opts, kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(200_000),
		kgo.RecordPartitioner(kgo.BasicConsistentPartitioner(func(topic string) func(*kgo.Record, int) int {
			keyed := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
			return func(r *kgo.Record, n int) int {
				if r.Key != nil && string(r.Key) == "walhook.watermark" {
					return int(r.Partition)
				}
				return keyed.Partition(r, n)
			}
		})))...)
	if err != nil {
		return nil, err
	}
	if err := avro.CreateSchemaTopic(ctx, cl, kafkaconn.SchemaTopic(cfg.Kafka), -1); err != nil {
		return nil, err
	}
	reg, err := kafkaconn.AvroRegistry(cfg, cl)
	if err != nil {
		return nil, err
	}
	w := &writer{cfg: cfg, cl: cl, reg: reg, lsn: 0x10000000}
	col := func(name, typ string) avro.Column {
		return avro.Column{Name: name, TypeName: typ, Nullable: true, Key: name == "id"}
	}
	if w.session, err = avro.NewChangeSchema(avro.Table{Schema: "session", Name: "instance", Columns: []avro.Column{
		col("id", "int4"), col("uuid", "uuid"), col("score", "int4"), col("status", "text"), col("created_at", "timestamptz"),
		col("updated_at", "timestamptz"), col("tenant_id", "text")}}); err != nil {
		return nil, err
	}
	if w.incidentSchema, err = avro.NewChangeSchema(avro.Table{Schema: "incident", Name: "instance", Columns: []avro.Column{
		col("id", "int4"), col("name", "text"), col("status", "text"), col("severity", "text"), col("start_time", "timestamptz"),
		col("session_instance_id", "int4"), col("created_at", "timestamptz"), col("created_by", "int4"), col("updated_at", "timestamptz"),
		col("updated_by", "int4"), col("tenant_id", "text"), col("is_deleted", "bool")}}); err != nil {
		return nil, err
	}
	if w.txnEnd, err = avro.ParseSchema(avro.TxnEndSchema()); err != nil {
		return nil, err
	}
	if w.mark, err = avro.ParseSchema(avro.WatermarkSchema()); err != nil {
		return nil, err
	}
	adm := kadm.NewClient(cl)
	k := cfg.Kafka
	for _, t := range []struct {
		name    string
		configs map[string]string
	}{
		{k.ReferenceTopic("session.instance"), cfg.ReferenceTopicConfigs()},
		{k.ChangeTopic(cfg.Model.Roots[0]), map[string]string{"cleanup.policy": "delete"}},
	} {
		configs := map[string]*string{}
		for key, v := range t.configs {
			configs[key] = kadm.StringPtr(v)
		}
		resp, err := adm.CreateTopic(ctx, k.Partitions, -1, configs, t.name)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			return nil, fmt.Errorf("create %s: %w", t.name, err)
		}
	}
	return w, nil
}

func (w *writer) frame(ctx context.Context, topic string, s *avro.Schema, body []byte) ([]byte, error) {
	prefix, err := w.reg.Prefix(ctx, topic, s)
	if err != nil {
		return nil, err
	}
	return append(append(make([]byte, 0, len(prefix)+len(body)), prefix...), body...), nil
}

func headers(kind, table, op string, lsn uint64) []kgo.RecordHeader {
	return []kgo.RecordHeader{{Key: "walhook-kind", Value: []byte(kind)}, {Key: "walhook-table", Value: []byte(table)},
		{Key: "walhook-op", Value: []byte(op)}, {Key: "walhook-lsn", Value: []byte(fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn)))}}
}

func cells(vals ...string) []avro.Cell {
	out := make([]avro.Cell, len(vals))
	for i, v := range vals {
		if v == "" {
			out[i] = avro.Cell{Kind: avro.CellNull}
		} else {
			out[i] = avro.Cell{Kind: avro.CellText, Data: []byte(v)}
		}
	}
	return out
}

// sessions writes n session inserts in transactions of 10,000, each followed by a watermark on
// every partition.
func (w *writer) sessions(ctx context.Context, n int) error {
	topic := w.cfg.Kafka.ReferenceTopic("session.instance")
	var perr error
	promise := func(_ *kgo.Record, err error) {
		if err != nil && perr == nil {
			perr = err
		}
	}
	const perTxn = 10_000
	for i := 0; i < n; i += perTxn {
		w.lsn += 0x1000
		at := time.Now().UTC()
		for id := i; id < min(n, i+perTxn); id++ {
			key := strconv.Itoa(id + 1)
			body, err := w.session.AppendChange(nil, avro.ChangeHeader{Op: avro.OpCreate, CommitLSN: w.lsn, Xid: uint32(i), CommitTime: at, Index: int64(id - i)}, nil,
				cells(key, fmt.Sprintf("019c22ef-edc6-765d-9ab3-%012d", id), strconv.Itoa(id%100), "IN_PROGRESS", "2026-02-03 09:57:55.341+00", "2026-02-03 09:57:55.341+00", "acme"))
			if err != nil {
				return err
			}
			v, err := w.frame(ctx, topic, w.session.Schema(), body)
			if err != nil {
				return err
			}
			w.cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: v, Headers: headers("change", "session.instance", "c", w.lsn)}, promise)
		}
		if err := w.watermarks(ctx, promise); err != nil {
			return err
		}
		if i%(50*perTxn) == 0 && i > 0 {
			step(fmt.Sprintf("  %d rows", i))
		}
	}
	if err := w.cl.Flush(ctx); err != nil {
		return err
	}
	return perr
}

func (w *writer) watermarks(ctx context.Context, promise func(*kgo.Record, error)) error {
	topic := w.cfg.Kafka.ReferenceTopic("session.instance")
	v, err := w.frame(ctx, topic, w.mark, avro.AppendWatermark(nil, avro.Watermark{CommitLSN: w.lsn, Time: time.Now().UTC()}))
	if err != nil {
		return err
	}
	for p := int32(0); p < w.cfg.Kafka.Partitions; p++ {
		w.cl.Produce(ctx, &kgo.Record{Topic: topic, Partition: p, Key: []byte("walhook.watermark"), Value: v,
			Headers: headers("watermark", "session.instance", "", w.lsn)}, promise)
	}
	return nil
}

// incident writes one source transaction creating incident id, pointing at session, and the
// reference watermark at its LSN.
func (w *writer) incident(ctx context.Context, id, session int) error {
	w.lsn += 0x1000
	topic := w.cfg.Kafka.ChangeTopic(w.cfg.Model.Roots[0])
	at := time.Now().UTC()
	key := strconv.Itoa(id)
	body, err := w.incidentSchema.AppendChange(nil, avro.ChangeHeader{Op: avro.OpCreate, CommitLSN: w.lsn, Xid: 1, CommitTime: at}, nil,
		cells(key, "Face not detected", "TRIGGERED", "LOW", "2026-02-03 10:46:23.26+00", strconv.Itoa(session),
			"2026-02-03 09:57:55.341+00", "1", "2026-02-03 09:57:55.341+00", "1", "acme", "f"))
	if err != nil {
		return err
	}
	change, err := w.frame(ctx, topic, w.incidentSchema.Schema(), body)
	if err != nil {
		return err
	}
	end, err := w.frame(ctx, topic, w.txnEnd, avro.AppendTxnEnd(nil, avro.TxnEnd{Table: "incident.instance", RootKey: key, CommitLSN: w.lsn, Xid: 1, CommitTime: at, Rows: 1}))
	if err != nil {
		return err
	}
	var perr error
	promise := func(_ *kgo.Record, err error) {
		if err != nil && perr == nil {
			perr = err
		}
	}
	w.cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: change, Headers: headers("change", "incident.instance", "c", w.lsn)}, promise)
	w.cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: end, Headers: headers("txn-end", "incident.instance", "", w.lsn)}, promise)
	if err := w.watermarks(ctx, promise); err != nil {
		return err
	}
	if err := w.cl.Flush(ctx); err != nil {
		return err
	}
	return perr
}

// snapshots reads walhook_bubbleup_snapshots_total (all event types) from /metrics; 0 when
// unavailable.
func snapshots(url string) float64 {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "walhook_bubbleup_snapshots_total{") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// procStatus reads a kB field of /proc/<pid>/status.
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field) {
			f := strings.Fields(line)
			if len(f) >= 2 {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				return v
			}
		}
	}
	return 0
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return n
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
