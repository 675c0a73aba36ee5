package apachekafka

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options configures Start. The zero value is one combined broker+controller node of
// DefaultVersion in a temporary directory.
type Options struct {
	// Nodes is 1 (one combined broker+controller) or 3 (three combined nodes, a three-voter
	// quorum, replication factor 3 and min.insync.replicas=2); 0 means 1.
	Nodes int
	// Version and CacheDir are passed to Resolve.
	Version  string
	CacheDir string
	// Dir holds the nodes' configs, data and logs; "" makes a temporary directory that Close
	// removes. A given Dir is kept.
	Dir string
	// HeapMB is each JVM's maximum heap; 0 means 320.
	HeapMB int
	// JVMFlags replace DefaultJVMFlags when non-nil (heap and logging flags are always added).
	JVMFlags []string
	// BrokerConfig adds to or overrides the generated server.properties of every node.
	BrokerConfig map[string]string
	// StartTimeout bounds Start after the jars are resolved (that runs on ctx alone); 0 means 2 minutes.
	StartTimeout time.Duration
	// Log receives one line per lifecycle event (node started, killed); nil discards them.
	Log func(format string, args ...any)
}

// DefaultJVMFlags suit tests on a small machine: the serial collector and the client compiler
// start fast and leave the cores to the code under test. Benchmarks that want the broker at full
// speed pass TunedJVMFlags.
var DefaultJVMFlags = []string{"-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto"}

// TunedJVMFlags is Kafka's own production choice (G1, both compilers).
var TunedJVMFlags = []string{"-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35"}

func (o Options) withDefaults() Options {
	if o.Nodes == 0 {
		o.Nodes = 1
	}
	if o.HeapMB == 0 {
		o.HeapMB = 320
	}
	if o.JVMFlags == nil {
		o.JVMFlags = DefaultJVMFlags
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 2 * time.Minute
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	return o
}

// Cluster is a running Apache Kafka cluster. Its methods are safe for concurrent use.
type Cluster struct {
	opts      Options
	dist      *Distribution
	dir       string
	ownDir    bool
	clusterID string
	nodes     []*Node

	closeOnce sync.Once
	closeErr  error
}

// Start resolves the distribution, writes and formats every node, starts the JVMs and waits until
// the cluster is usable (see the package doc). On error nothing is left running.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	opts = opts.withDefaults()
	if opts.Nodes != 1 && opts.Nodes != 3 {
		return nil, fmt.Errorf("apachekafka: Nodes %d: use 1 (one combined node) or 3 (a three-node quorum)", opts.Nodes)
	}
	// Resolving the jars runs on the caller's deadline only: a first run on a fresh machine
	// downloads them, which must not eat into the time the JVMs get to start (on a loaded
	// machine three of them need most of StartTimeout).
	dist, err := Resolve(ctx, opts.Version, opts.CacheDir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	c := &Cluster{opts: opts, dist: dist, dir: opts.Dir}
	if c.dir == "" {
		removeStaleDirs()
		if c.dir, err = os.MkdirTemp("", tempPrefix+strconv.Itoa(os.Getpid())+"-"); err != nil {
			return nil, fmt.Errorf("apachekafka: %w", err)
		}
		c.ownDir = true
	} else if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("apachekafka: %w", err)
	}
	if err := c.prepare(ctx); err != nil {
		c.Close()
		return nil, err
	}
	for _, n := range c.nodes {
		if err := n.launch(); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.waitUsable(ctx); err != nil {
		c.Close()
		return nil, err
	}
	opts.Log("apachekafka: %d-node cluster %s up at %v (dir %s)", opts.Nodes, dist.Version, c.Brokers(), c.dir)
	return c, nil
}

// prepare picks ports, writes each node's configs and formats its storage, or reuses a Dir
// formatted by an earlier Start with the same ports.
func (c *Cluster) prepare(ctx context.Context) error {
	state := filepath.Join(c.dir, "cluster.json")
	if loadState(state, c) {
		return nil
	}
	c.clusterID = newClusterID()
	for id := 1; id <= c.opts.Nodes; id++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		cport, err := freePort()
		if err != nil {
			return err
		}
		c.nodes = append(c.nodes, &Node{ID: id, Port: port, ControllerPort: cport, dir: filepath.Join(c.dir, "node-"+strconv.Itoa(id)), c: c})
	}
	var wg sync.WaitGroup
	errs := make([]error, len(c.nodes))
	for i, n := range c.nodes {
		if err := n.writeConfig(); err != nil {
			return err
		}
		wg.Go(func() { errs[i] = n.format(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return saveState(state, c)
}

// Brokers returns the bootstrap addresses of every node, "127.0.0.1:PORT".
func (c *Cluster) Brokers() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Addr()
	}
	return out
}

// Nodes returns the cluster's nodes in id order (ids start at 1).
func (c *Cluster) Nodes() []*Node { return append([]*Node(nil), c.nodes...) }

// Node returns the node with id, nil when there is none.
func (c *Cluster) Node(id int) *Node {
	if id < 1 || id > len(c.nodes) {
		return nil
	}
	return c.nodes[id-1]
}

// Dir is the directory of the nodes' configs, data and logs (server.log per node).
func (c *Cluster) Dir() string { return c.dir }

// Version is the Kafka release that runs.
func (c *Cluster) Version() string { return c.dist.Version }

// Close kills every JVM and removes the temporary directory. It is idempotent.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		var errs []error
		for _, n := range c.nodes {
			errs = append(errs, n.Kill())
		}
		if c.ownDir {
			errs = append(errs, os.RemoveAll(c.dir))
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// Pids returns the process ids of the running JVMs.
func (c *Cluster) Pids() []int {
	var out []int
	for _, n := range c.nodes {
		if pid := n.Pid(); pid > 0 {
			out = append(out, pid)
		}
	}
	return out
}

// tempPrefix starts the name of a temporary cluster directory, followed by the owner's pid.
const tempPrefix = "walhook-apachekafka-"

// removeStaleDirs removes temporary cluster directories whose owner process is gone: a test
// binary that was killed, or one that shared a cluster for its whole run (kafkatest) and exited
// without closing it. Its JVMs died with it (Pdeathsig); only the files remain.
func removeStaleDirs() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, m := range matches {
		rest := strings.TrimPrefix(filepath.Base(m), tempPrefix)
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(m)
		}
	}
}

// newClusterID returns a random Kafka cluster id: 16 bytes, base64url without padding. Kafka
// never issues one starting with '-' (it would read as a flag), so neither do we.
func newClusterID() string {
	for {
		var b [16]byte
		_, _ = rand.Read(b[:])
		id := base64.RawURLEncoding.EncodeToString(b[:])
		if id[0] != '-' {
			return id
		}
	}
}

// freePort asks the kernel for a free port on 127.0.0.1. It is free only until someone else
// binds it; a node that loses the race fails to start with the port named in its log.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("apachekafka: find a free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// logTail returns the last n bytes of path, for errors.
func logTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
