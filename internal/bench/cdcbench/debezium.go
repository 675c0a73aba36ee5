package main

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/internal/maven"
)

// Debezium runs as users deploy it most: its PostgreSQL connector (pgoutput) inside Kafka Connect
// standalone, whose producer writes to the same broker kind walhook writes to. The jars come from
// Maven Central into the user's cache directory, never into the repository.
const (
	debeziumVersion = "3.6.1.Final"
	connectVersion  = "4.4.0"
	log4jVersion    = "2.25.5"
	debeziumPrefix  = "dbz" // topic.prefix: topics dbz.incident.instance, ...
)

// debezium is a resolved Kafka Connect runtime and the connector plugin.
type debezium struct {
	java        string
	connectLibs string // Kafka Connect's classpath
	pluginPath  string // plugin.path: holds libs/, the connector's isolated plugin directory
}

func resolveDebezium(ctx context.Context) (*debezium, error) {
	java, err := maven.FindJava(ctx, 17, "Kafka Connect with Debezium")
	if err != nil {
		return nil, err
	}
	base := os.Getenv("WALHOOK_KAFKA_CACHE")
	if base == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return nil, err
		}
		base = filepath.Join(cache, "walhook")
	}
	connect, err := maven.Resolve(ctx, filepath.Join(base, "kafka-connect", connectVersion), "Kafka Connect",
		maven.Artifact{Group: "org.apache.kafka", Name: "connect-runtime", Version: connectVersion},
		maven.Artifact{Group: "org.apache.kafka", Name: "connect-json", Version: connectVersion},
		maven.Artifact{Group: "org.apache.logging.log4j", Name: "log4j-slf4j-impl", Version: log4jVersion})
	if err != nil {
		return nil, err
	}
	pluginDir := filepath.Join(base, "debezium-postgres", debeziumVersion)
	if _, err := maven.Resolve(ctx, pluginDir, "Debezium's PostgreSQL connector",
		maven.Artifact{Group: "io.debezium", Name: "debezium-connector-postgres", Version: debeziumVersion}); err != nil {
		return nil, err
	}
	return &debezium{java: java, connectLibs: connect, pluginPath: pluginDir}, nil
}

// debeziumVariant is one configuration measured.
type debeziumVariant struct {
	name      string
	worker    map[string]string // added to the worker config
	connector map[string]string // added to the connector config
}

// debeziumVariants: the connector and Connect as shipped (JSON with schemas, Debezium's 2,048-event
// batches, Connect's producer), and a variant tuned for throughput the way Debezium's docs suggest:
// larger batches and queue, shorter polls, schemaless JSON, a batching and compressing producer.
var debeziumVariants = []debeziumVariant{
	{name: "defaults"},
	{name: "tuned",
		worker: map[string]string{
			"key.converter.schemas.enable":   "false",
			"value.converter.schemas.enable": "false",
			"producer.batch.size":            "524288",
			"producer.linger.ms":             "10",
			"producer.compression.type":      "lz4",
			"producer.buffer.memory":         "134217728",
		},
		connector: map[string]string{
			"max.batch.size":   "20480",
			"max.queue.size":   "81920",
			"poll.interval.ms": "50",
		}},
}

// measureDebezium runs Connect standalone with the connector on slot (created before the
// workload, so it decodes the same WAL as the other tools) and times it from the JVM's start until
// its topics hold one record per row change.
func measureDebezium(ctx context.Context, dz *debezium, work, pgURL, slot, brokers string, rows int, v debeziumVariant) (result, error) {
	u, err := url.Parse(pgURL)
	if err != nil {
		return result{}, err
	}
	dir := filepath.Join(work, slot)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return result{}, err
	}
	restAddr, err := freeAddr()
	if err != nil {
		return result{}, err
	}
	worker := map[string]string{
		"bootstrap.servers":                 brokers,
		"key.converter":                     "org.apache.kafka.connect.json.JsonConverter",
		"value.converter":                   "org.apache.kafka.connect.json.JsonConverter",
		"offset.storage.file.filename":      filepath.Join(dir, "offsets"),
		"offset.flush.interval.ms":          "10000",
		"plugin.path":                       dz.pluginPath,
		"listeners":                         "http://" + restAddr,
		"plugin.discovery":                  "only_scan",
		"task.shutdown.graceful.timeout.ms": "1000",
	}
	maps.Copy(worker, v.worker)
	pass, _ := u.User.Password()
	connector := map[string]string{
		"name":                        "walhook-bench-" + slot,
		"connector.class":             "io.debezium.connector.postgresql.PostgresConnector",
		"tasks.max":                   "1",
		"database.hostname":           u.Hostname(),
		"database.port":               u.Port(),
		"database.user":               u.User.Username(),
		"database.password":           pass,
		"database.dbname":             strings.TrimPrefix(u.Path, "/"),
		"topic.prefix":                debeziumPrefix,
		"plugin.name":                 "pgoutput",
		"slot.name":                   slot,
		"publication.name":            "walhook",
		"publication.autocreate.mode": "disabled",
		"snapshot.mode":               "no_data",
		"table.include.list":          "incident.instance,incident.timeline,session.instance",
	}
	maps.Copy(connector, v.connector)
	workerPath, connPath, logPath := filepath.Join(dir, "worker.properties"), filepath.Join(dir, "connector.properties"), filepath.Join(dir, "connect.log")
	if err := writeProperties(workerPath, worker); err != nil {
		return result{}, err
	}
	if err := writeProperties(connPath, connector); err != nil {
		return result{}, err
	}
	log4j := filepath.Join(dir, "log4j2.properties")
	if err := os.WriteFile(log4j, []byte(`status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = `+logPath+`
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
`), 0o644); err != nil {
		return result{}, err
	}
	admin, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		return result{}, err
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	topics := []string{debeziumPrefix + ".incident.instance", debeziumPrefix + ".incident.timeline", debeziumPrefix + ".session.instance"}
	before := recordsIn(ctx, adm, topics) // earlier runs wrote to the same topics

	// connect-standalone.sh's JVM: a 256 MiB to 2 GiB heap and G1.
	cmd := exec.Command(dz.java, "-Xms256M", "-Xmx2G", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
		"-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true",
		"-Dlog4j2.configurationFile="+log4j, "-cp", filepath.Join(dz.connectLibs, "*"),
		"org.apache.kafka.connect.cli.ConnectStandalone", workerPath, connPath)
	stdout, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		return result{}, err
	}
	defer stdout.Close()
	cmd.Stdout, cmd.Stderr = stdout, stdout
	return timedRun(ctx, cmd, "Kafka Connect with Debezium", logPath, pgURL, slot, 60*time.Minute, func() (bool, error) {
		return recordsIn(ctx, adm, topics)-before >= int64(rows), nil
	})
}

// recordsIn sums the end offsets of topics (0 for those not created yet).
func recordsIn(ctx context.Context, adm *kadm.Client, topics []string) int64 {
	offs, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return 0
	}
	var n int64
	offs.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			n += o.Offset
		}
	})
	return n
}

func writeProperties(path string, props map[string]string) error {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(props)) {
		fmt.Fprintf(&b, "%s=%s\n", k, props[k])
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// walsenderSampler follows the CPU time of the walsender serving a slot: the walsender is
// PostgreSQL's process, not the tool's, and its CPU is half of what decoding costs. It is read
// from /proc every 100 ms while the slot is active, so the last reading before the walsender
// exits is kept.
type walsenderSampler struct {
	cancel context.CancelFunc
	done   chan time.Duration
	once   sync.Once
	cpu    time.Duration
}

func sampleWalsender(ctx context.Context, pgURL, slot string) *walsenderSampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &walsenderSampler{cancel: cancel, done: make(chan time.Duration, 1)}
	go func() {
		var last time.Duration
		defer func() { s.done <- last }()
		conn, err := pgx.Connect(ctx, pgURL)
		if err != nil {
			return
		}
		defer conn.Close(context.Background())
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			var pid *int32
			if err := conn.QueryRow(ctx, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&pid); err == nil && pid != nil {
				if cpu, err := procCPU(int(*pid)); err == nil {
					last = cpu
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the walsender's CPU at its last reading; later calls return
// the same.
func (s *walsenderSampler) stop() time.Duration {
	s.once.Do(func() {
		s.cancel()
		s.cpu = <-s.done
	})
	return s.cpu
}

// procCPU is pid's user+system CPU from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	var utime, stime int64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return time.Duration(utime+stime) * time.Second / 100, nil
}
