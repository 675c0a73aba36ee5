// Command cdcbench is the CDC benchmark of `make bench`: on one generated workload (every reader
// has its own slot, created before the workload, so all decode the same WAL) it measures
// pg_recvlogical (pgoutput to /dev/null: the walsender's limit), `walhook cdc` (a separate process)
// and Debezium's PostgreSQL connector in Kafka Connect standalone, as shipped and tuned, both
// writing to a fresh kfake broker in another process or, with -kafka apache, a fresh Apache Kafka
// node. It prints rows/s, CPU seconds per million rows of each tool and of the walsender serving
// it, peak RSS, and the ratios of the project's targets. See docs/benchmarks.md.
//
//	go run ./internal/bench/cdcbench [-rows 1000000] [-txn 1000] [-runs 2] [-kafka kfake|apache] [-debezium=false] [-cpuprofile DIR]
//
// Everything it starts (PostgreSQL, the broker process, walhook) is stopped before it returns.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/walhook/walhook/internal/apachekafka"
	"github.com/walhook/walhook/internal/demo"
	"github.com/walhook/walhook/internal/embedkafka"
	"github.com/walhook/walhook/internal/embedpg"
)

// roleEnv makes the re-executed binary the broker process.
const roleEnv = "WALHOOK_CDCBENCH_ROLE"

func main() {
	if os.Getenv(roleEnv) == "kfake" {
		if err := serveKfake(); err != nil {
			fmt.Fprintln(os.Stderr, "cdcbench broker:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.IntVar(&o.rows, "rows", 1_000_000, "row changes (as pgoutput delivers them) in the workload")
	flag.IntVar(&o.txnRows, "txn", 1000, "row changes per transaction")
	flag.IntVar(&o.runs, "runs", 2, "measurements of each tool, alternating")
	flag.StringVar(&o.compression, "compression", "", "override the producer compression (WALHOOK_CDC_COMPRESSION) for walhook")
	flag.StringVar(&o.bin, "bin", "", "a walhook binary to measure instead of building ./cmd/walhook")
	flag.StringVar(&o.alt, "alt", "", "more walhook binaries, comma-separated (e.g. a baseline build), measured in the same runs, alternating")
	flag.StringVar(&o.profileDir, "cpuprofile", "", "a directory to write a CPU profile of every walhook run to (SLOT.pprof, e.g. bench_walhook_1.pprof; go tool pprof)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (walhook configs and logs)")
	flag.StringVar(&o.logLevel, "log-level", "warn", "walhook's log level")
	flag.StringVar(&o.kafka, "kafka", "kfake", "the broker walhook and Debezium write to: kfake (a separate process) or apache (one Apache Kafka node; needs Java 17+ and Maven)")
	flag.BoolVar(&o.debezium, "debezium", true, "also measure Debezium's PostgreSQL connector in Kafka Connect (defaults and tuned; needs Java 17+ and Maven)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "cdcbench:", err)
		os.Exit(1)
	}
}

type options struct {
	rows, txnRows, runs int
	compression         string
	profileDir          string
	keep                bool
	bin, alt            string
	logLevel            string
	kafka               string
	debezium            bool
}

// result is one measurement.
type result struct {
	elapsed   time.Duration
	rssKiB    int64
	cpu       time.Duration // user+system CPU of the measured process
	walsender time.Duration // user+system CPU of the walsender serving its slot
	broker    time.Duration // user+system CPU of the broker process (walhook runs)
	counted   float64       // walhook's own row counter, to cross-check the workload
	// switches counts the measured process's context switches (voluntary: a thread blocked,
	// mostly an idle scheduler parking; involuntary: preempted), a gauge of its wake-ups.
	switches, preempted int64
}

func run(ctx context.Context, o options) error {
	if o.txnRows%20 != 0 || o.txnRows < 100 {
		return fmt.Errorf("-txn must be a multiple of 20, at least 100")
	}
	if o.kafka != "kfake" && o.kafka != "apache" {
		return fmt.Errorf("-kafka %q: use kfake or apache", o.kafka)
	}
	txns := o.rows / o.txnRows
	rows := txns * o.txnRows
	work, err := os.MkdirTemp("", "cdcbench-")
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
	recv, err := findRecvlogical()
	if err != nil {
		return err
	}
	step("starting PostgreSQL")
	pg, err := embedpg.Start(ctx, embedpg.Options{Logger: zap.NewNop(), Settings: map[string]string{
		"fsync": "off", "synchronous_commit": "off", "max_wal_size": "4GB", "checkpoint_timeout": "30min",
	}})
	if err != nil {
		return err
	}
	defer pg.Stop()
	url := pg.URL("postgres")
	db, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer db.Close(context.Background())
	kinds := []string{"bench_recv_", "bench_walhook_"}
	var alts []string
	if o.alt != "" {
		alts = strings.Split(o.alt, ",")
	}
	for j := range alts {
		kinds = append(kinds, fmt.Sprintf("bench_alt%d_", j+1))
	}
	var dz *debezium
	if o.debezium {
		step("resolving Kafka Connect and Debezium (cached after the first run)")
		if dz, err = resolveDebezium(ctx); err != nil {
			return fmt.Errorf("%w (or run with -debezium=false)", err)
		}
		for _, v := range debeziumVariants {
			kinds = append(kinds, "bench_dbz_"+v.name+"_")
		}
	}
	if err := prepare(ctx, db, o.runs, kinds); err != nil {
		return err
	}
	step(fmt.Sprintf("generating %d row changes in %d transactions", rows, txns))
	genStart := time.Now()
	if err := generate(ctx, db, txns, o.txnRows); err != nil {
		return err
	}
	var end string
	if err := db.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&end); err != nil {
		return err
	}
	var walBytes int64
	_ = db.QueryRow(ctx, `SELECT pg_wal_lsn_diff($1::pg_lsn, confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = 'bench_recv_1'`, end).Scan(&walBytes)
	step(fmt.Sprintf("generated in %v; end LSN %s, %.0f MiB of WAL", time.Since(genStart).Round(time.Millisecond), end, float64(walBytes)/(1<<20)))

	var recvRes, whRes []result
	altRes := make([][]result, len(alts))
	dbzRes := map[string][]result{}
	for i := 1; i <= o.runs; i++ {
		step(fmt.Sprintf("run %d/%d: pg_recvlogical", i, o.runs))
		r, err := measureRecvlogical(ctx, recv, url, fmt.Sprintf("bench_recv_%d", i), end)
		if err != nil {
			return err
		}
		recvRes = append(recvRes, r)
		step(fmt.Sprintf("  %v, %.0f rows/s, CPU %v", r.elapsed.Round(time.Millisecond), float64(rows)/r.elapsed.Seconds(), r.cpu.Round(time.Millisecond)))
		step(fmt.Sprintf("run %d/%d: walhook cdc", i, o.runs))
		r, err = measureWalhook(ctx, db, walhook, work, url, fmt.Sprintf("bench_walhook_%d", i), end, o)
		if err != nil {
			return err
		}
		whRes = append(whRes, r)
		step(fmt.Sprintf("  %v, %.0f rows/s, peak RSS %.0f MiB, CPU %v (broker %v), %d+%d context switches, walhook counted %.0f rows", r.elapsed.Round(time.Millisecond),
			float64(rows)/r.elapsed.Seconds(), float64(r.rssKiB)/1024, r.cpu.Round(time.Millisecond), r.broker.Round(time.Millisecond), r.switches, r.preempted, r.counted))
		if r.counted != 0 && int(r.counted) != rows {
			return fmt.Errorf("walhook counted %.0f row changes, the workload has %d", r.counted, rows)
		}
		for _, v := range debeziumVariants {
			if dz == nil {
				break
			}
			step(fmt.Sprintf("run %d/%d: Debezium %s (%s, Kafka Connect %s standalone)", i, o.runs, v.name, debeziumVersion, connectVersion))
			r, err := measureDebeziumOn(ctx, dz, work, url, fmt.Sprintf("bench_dbz_%s_%d", v.name, i), rows, v, o)
			if err != nil {
				return err
			}
			dbzRes[v.name] = append(dbzRes[v.name], r)
			step(fmt.Sprintf("  %v, %.0f rows/s, peak RSS %.0f MiB, CPU %v, walsender %v", r.elapsed.Round(time.Millisecond),
				float64(rows)/r.elapsed.Seconds(), float64(r.rssKiB)/1024, r.cpu.Round(time.Millisecond), r.walsender.Round(time.Millisecond)))
		}
		for j, alt := range alts {
			step(fmt.Sprintf("run %d/%d: alternative walhook %s", i, o.runs, alt))
			r, err = measureWalhook(ctx, db, alt, work, url, fmt.Sprintf("bench_alt%d_%d", j+1, i), end, o)
			if err != nil {
				return err
			}
			altRes[j] = append(altRes[j], r)
			step(fmt.Sprintf("  %v, %.0f rows/s, peak RSS %.0f MiB, CPU %v (broker %v), %d+%d context switches", r.elapsed.Round(time.Millisecond),
				float64(rows)/r.elapsed.Seconds(), float64(r.rssKiB)/1024, r.cpu.Round(time.Millisecond), r.broker.Round(time.Millisecond), r.switches, r.preempted))
		}
	}
	report(rows, o.txnRows, o.kafka, recvRes, whRes, dbzRes)
	for j, alt := range alts {
		fmt.Printf("alternative binary %s:\n", alt)
		report(rows, o.txnRows, o.kafka, recvRes, altRes[j], nil)
	}
	return nil
}

func step(s string) { fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), s) }

// report prints, per tool, the best run's rows/s, CPU per million rows (the tool's process and the
// walsender serving it), peak RSS, and the ratios the project's targets are stated in; then every
// run.
func report(rows, txnRows int, kafka string, recv, wh []result, dbz map[string][]result) {
	best := func(rs []result) result {
		return slices.MinFunc(rs, func(a, b result) int { return int(a.elapsed - b.elapsed) })
	}
	rate := func(r result) float64 { return float64(rows) / r.elapsed.Seconds() }
	perM := func(d time.Duration) float64 { return d.Seconds() * 1e6 / float64(rows) }
	peak := func(rs []result) int64 {
		var p int64
		for _, r := range rs {
			p = max(p, r.rssKiB)
		}
		return p
	}
	rb, wb := best(recv), best(wh)
	fmt.Printf("CDC benchmark: %d row changes in %d-row transactions, %d CPUs, %s, broker %s\n", rows, txnRows, runtime.NumCPU(), runtime.Version(), kafka)
	fmt.Printf("  %-58s %10s %12s %14s %10s\n", "tool (best run)", "rows/s", "CPU s/Mrow", "walsender s/M", "peak RSS")
	line := func(name string, r result, rss int64) {
		fmt.Printf("  %-58s %10.0f %12.2f %14.2f %7.0f MiB\n", name, rate(r), perM(r.cpu), perM(r.walsender), float64(rss)/1024)
	}
	line("pg_recvlogical (pgoutput -> /dev/null)", rb, peak(recv))
	line("walhook cdc (-> "+kafka+")", wb, peak(wh))
	names := slices.Sorted(maps.Keys(dbz))
	for _, n := range names {
		line("Debezium "+debeziumVersion+" "+n+" (Kafka Connect -> "+kafka+")", best(dbz[n]), peak(dbz[n]))
	}
	fmt.Printf("  ratio walhook / pg_recvlogical rows/s      %6.2f  (target >= 0.95)\n", rate(wb)/rate(rb))
	fmt.Printf("  ratio walhook / pg_recvlogical CPU per row %6.2f  (target <= 1.00)\n", perM(wb.cpu)/perM(rb.cpu))
	for _, n := range names {
		db := best(dbz[n])
		fmt.Printf("  ratio walhook / Debezium %-8s rows/s     %6.2f  (target >= 3)\n", n, rate(wb)/rate(db))
		fmt.Printf("  ratio walhook / Debezium %-8s peak RSS   %6.2f  (target <= 0.25)\n", n, float64(peak(wh))/float64(peak(dbz[n])))
	}
	for i := range recv {
		fmt.Printf("  run %d: pg_recvlogical %.0f rows/s (CPU %.2fs, walsender %.2fs, %d context switches); walhook %.0f rows/s (CPU %.2fs, walsender %.2fs, broker %.2fs, RSS %.0f MiB, %d context switches); ratio %.2f", i+1,
			rate(recv[i]), recv[i].cpu.Seconds(), recv[i].walsender.Seconds(), recv[i].switches+recv[i].preempted, rate(wh[i]), wh[i].cpu.Seconds(), wh[i].walsender.Seconds(),
			wh[i].broker.Seconds(), float64(wh[i].rssKiB)/1024, wh[i].switches+wh[i].preempted, rate(wh[i])/rate(recv[i]))
		for _, n := range names {
			if i < len(dbz[n]) {
				d := dbz[n][i]
				fmt.Printf("; Debezium %s %.0f rows/s (CPU %.1fs, walsender %.1fs, RSS %.0f MiB)", n, rate(d), d.cpu.Seconds(), d.walsender.Seconds(), float64(d.rssKiB)/1024)
			}
		}
		fmt.Println()
	}
}

func findRecvlogical() (string, error) {
	if p, err := exec.LookPath("pg_recvlogical"); err == nil {
		return p, nil
	}
	dir, err := embedpg.FindBinaries()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "pg_recvlogical")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("pg_recvlogical not found on PATH nor in %s: install the PostgreSQL client tools", dir)
	}
	return p, nil
}

// prepare applies the demo schema, seeds the rows the workload updates, sets the replica
// identity walhook would set, then creates the publication and every slot before any of the
// workload is written, so every reader decodes the same WAL.
func prepare(ctx context.Context, db *pgx.Conn, runs int, kinds []string) error {
	stmts := []string{
		demo.SchemaSQL,
		`INSERT INTO session.instance (id, status, tenant_id) VALUES (1, 'COMPLETED', 't1')`,
		`INSERT INTO incident.instance (id, status, severity, start_time, session_instance_id, tenant_id)
			SELECT g, 'TRIGGERED', 'LOW', now(), 1, 't1' FROM generate_series(1, 1000) g`,
		`ALTER TABLE incident.timeline REPLICA IDENTITY FULL`,
		`CREATE PUBLICATION walhook FOR TABLE incident.instance, incident.timeline, session.instance`,
	}
	for _, s := range stmts {
		if _, err := db.Exec(ctx, s); err != nil {
			return fmt.Errorf("prepare: %.60q: %w", s, err)
		}
	}
	for i := 1; i <= runs; i++ {
		for _, s := range kinds {
			if _, err := db.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, s+strconv.Itoa(i)); err != nil {
				return fmt.Errorf("create slot: %w", err)
			}
		}
	}
	return nil
}

// generate writes txns transactions of txnRows row changes each, as pgoutput counts them: per
// 1000 changes, 50 incident inserts (roots), 425 timeline inserts (subordinates) each of which
// updates its incident through the demo trigger (425 more changes), and 100 incident updates.
func generate(ctx context.Context, db *pgx.Conn, txns, txnRows int) error {
	roots, subs := txnRows/20, txnRows*17/40
	upd := txnRows - roots - 2*subs
	next := 2000
	for i := 0; i < txns; i++ {
		base := next
		next += roots
		lo := 1 + (i*upd)%(1000-upd)
		sql := fmt.Sprintf(`BEGIN;
INSERT INTO incident.instance (id, name, description, status, severity, start_time, session_instance_id, tenant_id)
	SELECT %[1]d + g, 'incident ' || g, 'generated by the walhook CDC benchmark', 'TRIGGERED', 'HIGH', now(), 1, 't1'
	FROM generate_series(1, %[2]d) g;
INSERT INTO incident.timeline (incident_instance_id, action, description, tenant_id)
	SELECT %[1]d + 1 + g %% %[2]d, 'COMMENTED', 'timeline row ' || g || ' of a benchmark transaction, padded to about 150 bytes', 't1'
	FROM generate_series(1, %[3]d) g;
UPDATE incident.instance SET status = 'RESOLVED', resolution_notes = 'resolved by the benchmark, txn %[6]d'
	WHERE id BETWEEN %[4]d AND %[5]d;
COMMIT;`, base, roots, subs, lo, lo+upd-1, i)
		if _, err := db.Exec(ctx, sql); err != nil {
			return fmt.Errorf("workload transaction %d: %w", i, err)
		}
	}
	return nil
}

// measureRecvlogical times pg_recvlogical from start until it exits at endpos.
func measureRecvlogical(ctx context.Context, bin, url, slot, end string) (result, error) {
	cmd := exec.CommandContext(ctx, bin, "-d", url, "--slot", slot, "--start", "--no-loop",
		"-P", "pgoutput", "-o", "proto_version=2", "-o", "publication_names=walhook", "-o", "messages=true", "-o", "streaming=on",
		"--endpos", end, "-f", "/dev/null")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	sampler := sampleWalsender(ctx, url, slot)
	start := time.Now()
	if err := cmd.Run(); err != nil {
		sampler.stop()
		return result{}, fmt.Errorf("pg_recvlogical: %v: %s", err, stderr.String())
	}
	r := result{elapsed: time.Since(start), walsender: sampler.stop()}
	r.fromRusage(cmd.ProcessState)
	return r, nil
}

func cpuTime(ps *os.ProcessState) time.Duration { return ps.UserTime() + ps.SystemTime() }

// fromRusage fills the CPU, peak RSS and context switches of the exited process ps.
func (r *result) fromRusage(ps *os.ProcessState) {
	r.cpu = cpuTime(ps)
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		r.rssKiB, r.switches, r.preempted = ru.Maxrss, ru.Nvcsw, ru.Nivcsw
	}
}

// measureWalhook starts a broker process, then `walhook cdc`, and times walhook from its start
// until the slot's confirmed_flush_lsn reaches end; then it stops both.
func measureWalhook(ctx context.Context, db *pgx.Conn, bin, work, url, slot, end string, o options) (result, error) {
	broker, err := startBroker(ctx, o.kafka, work)
	if err != nil {
		return result{}, err
	}
	brokerStopped := false
	defer func() {
		if !brokerStopped {
			broker.stop()
		}
	}()
	brokers := broker.addr
	httpAddr, err := freeAddr()
	if err != nil {
		return result{}, err
	}
	cfgPath := filepath.Join(work, slot+".yaml")
	cfg := fmt.Sprintf(`postgres:
  url: %q
  slot: %s
  publication: walhook
kafka:
  brokers: [%q]
  topic_prefix: "bench."
cdc:
  spill_dir: %q
  status_interval: 100ms
http:
  listen: %q
log:
  level: %s
%s`, url, slot, brokers, filepath.Join(work, "spill-"+slot), httpAddr, o.logLevel, demo.ModelYAML)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return result{}, err
	}
	cmd := exec.Command(bin, "cdc", "--config", cfgPath)
	logPath := filepath.Join(work, slot+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return result{}, err
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = os.Environ()
	if o.compression != "" {
		cmd.Env = append(cmd.Env, "WALHOOK_CDC_COMPRESSION="+o.compression)
	}
	if o.profileDir != "" { // cmd/walhook/process.go startProfiles; written when walhook exits
		cmd.Env = append(cmd.Env, "WALHOOK_CPUPROFILE="+filepath.Join(o.profileDir, slot+".pprof"))
	}
	var counted float64
	tr, err := timedRun(ctx, cmd, "walhook cdc", logPath, url, slot, 30*time.Minute, func() (bool, error) {
		var done bool
		err := db.QueryRow(ctx, `SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1`, slot, end).Scan(&done)
		if done {
			counted = scrapeRows("http://" + httpAddr + "/metrics")
		}
		return done, err
	})
	if err != nil {
		return result{}, err
	}
	tr.broker, tr.counted, brokerStopped = broker.stop(), counted, true
	return tr, nil
}

// scrapeRows reads walhook_cdc_rows_total from walhook's /metrics (0 when unavailable).
func scrapeRows(url string) float64 {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "walhook_cdc_rows_total") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return v
		}
	}
	return 0
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

// broker is the Kafka one walhook run writes to; stop stops it and returns the CPU it used.
type broker struct {
	addr string
	stop func() time.Duration
}

// startBroker starts a fresh broker of kind for one walhook run: kfake in a re-executed copy of
// this binary, or one Apache Kafka node (Kafka's production JVM flags) from internal/apachekafka.
func startBroker(ctx context.Context, kind, work string) (*broker, error) {
	if kind == "apache" {
		dir, err := os.MkdirTemp(work, "apache-kafka-")
		if err != nil {
			return nil, err
		}
		// Six partitions for auto-created topics, as walhook creates its own: Debezium's topics
		// are created by its producer.
		c, err := apachekafka.Start(ctx, apachekafka.Options{Dir: dir, JVMFlags: apachekafka.TunedJVMFlags, HeapMB: 1024,
			BrokerConfig: map[string]string{"num.partitions": "6"}})
		if err != nil {
			return nil, err
		}
		return &broker{addr: c.Brokers()[0], stop: func() time.Duration {
			cpu, _ := c.Node(1).CPUTime()
			_ = c.Close()
			_ = os.RemoveAll(dir)
			return cpu
		}}, nil
	}
	cmd, addr, err := startKfake(ctx)
	if err != nil {
		return nil, err
	}
	return &broker{addr: addr, stop: func() time.Duration { stopProcess(cmd); return cpuTime(cmd.ProcessState) }}, nil
}

// startKfake re-executes this binary as the broker process and reads its address.
func startKfake(ctx context.Context) (*exec.Cmd, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), roleEnv+"=kfake")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stopProcess(cmd)
		return nil, "", fmt.Errorf("broker process: %w", err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return cmd, strings.TrimSpace(line), nil
}

func stopProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// serveKfake is the broker process: kfake over TCP until SIGTERM.
func serveKfake() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := embedkafka.Start(ctx, embedkafka.Options{RegistryPort: -1})
	if err != nil {
		return err
	}
	fmt.Println(st.Brokers()[0])
	<-ctx.Done()
	return errors.Join(st.Close())
}

// measureDebeziumOn measures one Debezium variant against a fresh broker of o.kafka.
func measureDebeziumOn(ctx context.Context, dz *debezium, work, url, slot string, rows int, v debeziumVariant, o options) (result, error) {
	b, err := startBroker(ctx, o.kafka, work)
	if err != nil {
		return result{}, err
	}
	r, err := measureDebezium(ctx, dz, work, url, slot, b.addr, rows, v)
	r.broker = b.stop()
	return r, err
}

// timedRun starts cmd (its output already directed to logPath) and times it from its start until
// done reports true, polled every 50 ms; then it reads the CPU of the walsender serving slot,
// stops cmd with SIGTERM (SIGKILL after 30 s) and returns the figures. It fails when cmd exits
// early, ctx ends or limit passes.
func timedRun(ctx context.Context, cmd *exec.Cmd, name, logPath, pgURL, slot string, limit time.Duration, done func() (bool, error)) (result, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	sampler := sampleWalsender(ctx, pgURL, slot)
	defer sampler.stop()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return result{}, fmt.Errorf("start %s: %w", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	kill := func() { _ = cmd.Process.Kill(); <-exited }
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var elapsed time.Duration
	for elapsed == 0 {
		select {
		case <-ctx.Done():
			kill()
			return result{}, ctx.Err()
		case err := <-exited:
			return result{}, fmt.Errorf("%s exited early (%v); log %s:\n%s", name, err, logPath, tail(logPath))
		case <-tick.C:
		}
		ok, err := done()
		switch {
		case err != nil:
			kill()
			return result{}, err
		case ok:
			elapsed = time.Since(start)
		case time.Since(start) > limit:
			kill()
			return result{}, fmt.Errorf("%s did not finish in %v; log %s", name, limit, logPath)
		}
	}
	walsender := sampler.stop()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		kill()
	}
	r := result{elapsed: elapsed, walsender: walsender}
	r.fromRusage(cmd.ProcessState)
	return r, nil
}
