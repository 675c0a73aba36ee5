package apachekafka

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// serverProperties is node n's server.properties. Internal topics are replicated to every node
// (at most 3) with min.insync.replicas 2 on three nodes, as a production cluster would be;
// the thread counts and buffers are sized for a 2-core test machine.
func (n *Node) serverProperties() map[string]string {
	c := n.c
	nodes := len(c.nodes)
	voters := make([]string, nodes)
	for i, o := range c.nodes {
		voters[i] = fmt.Sprintf("%d@127.0.0.1:%d", o.ID, o.ControllerPort)
	}
	rf := strconv.Itoa(min(nodes, 3))
	isr := "1"
	if nodes >= 3 {
		isr = "2"
	}
	p := map[string]string{
		"process.roles":                            "broker,controller",
		"node.id":                                  strconv.Itoa(n.ID),
		"controller.quorum.voters":                 strings.Join(voters, ","),
		"listeners":                                fmt.Sprintf("PLAINTEXT://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d", n.Port, n.ControllerPort),
		"advertised.listeners":                     fmt.Sprintf("PLAINTEXT://127.0.0.1:%d", n.Port),
		"controller.listener.names":                "CONTROLLER",
		"inter.broker.listener.name":               "PLAINTEXT",
		"listener.security.protocol.map":           "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
		"log.dirs":                                 filepath.Join(n.dir, "data"),
		"num.partitions":                           "1", // Apache Kafka's default: walhook must say how many it wants
		"default.replication.factor":               rf,
		"min.insync.replicas":                      isr,
		"offsets.topic.replication.factor":         rf,
		"offsets.topic.num.partitions":             "10",
		"transaction.state.log.replication.factor": rf,
		"transaction.state.log.min.isr":            isr,
		"transaction.state.log.num.partitions":     "10",
		// A group's first member waits this long for others before the first rebalance (3 s
		// by default); tests start members one at a time.
		"group.initial.rebalance.delay.ms":                 "0",
		"num.network.threads":                              "2",
		"num.io.threads":                                   "4",
		"background.threads":                               "4",
		"num.replica.fetchers":                             "1",
		"num.recovery.threads.per.data.dir":                "1",
		"log.cleaner.threads":                              "1",
		"log.cleaner.dedupe.buffer.size":                   strconv.Itoa(16 << 20),
		"share.coordinator.state.topic.replication.factor": rf,
		"share.coordinator.state.topic.min.isr":            isr,
		// KIP-848 groups (kafka.group_protocol: consumer) take their session from the broker
		// (45 s by default, also the minimum): 10 s like the stages' classic session_timeout, so
		// a SIGKILLed member's partitions move as quickly under either protocol.
		"group.consumer.session.timeout.ms":        "10000",
		"group.consumer.min.session.timeout.ms":    "6000",
		"group.consumer.heartbeat.interval.ms":     "1000",
		"group.consumer.min.heartbeat.interval.ms": "1000",
	}
	maps.Copy(p, c.opts.BrokerConfig)
	return p
}

func (n *Node) writeConfig() error {
	if err := os.MkdirAll(filepath.Join(n.dir, "data"), 0o755); err != nil {
		return fmt.Errorf("apachekafka: node %d: %w", n.ID, err)
	}
	props := n.serverProperties()
	var b strings.Builder
	b.WriteString("# written by walhook's internal/apachekafka\n")
	for _, k := range slices.Sorted(maps.Keys(props)) {
		fmt.Fprintf(&b, "%s=%s\n", k, props[k])
	}
	if err := os.WriteFile(n.propertiesPath(), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("apachekafka: node %d: %w", n.ID, err)
	}
	log4j := `status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ` + n.LogPath() + `
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
`
	if err := os.WriteFile(n.log4jPath(), []byte(log4j), 0o644); err != nil {
		return fmt.Errorf("apachekafka: node %d: %w", n.ID, err)
	}
	return nil
}

func (n *Node) propertiesPath() string { return filepath.Join(n.dir, "server.properties") }
func (n *Node) log4jPath() string      { return filepath.Join(n.dir, "log4j2.properties") }

// LogPath is the node's broker log.
func (n *Node) LogPath() string { return filepath.Join(n.dir, "server.log") }

// stdoutPath receives what the JVM prints outside log4j (crashes, JVM warnings).
func (n *Node) stdoutPath() string { return filepath.Join(n.dir, "stdout.log") }

// clusterState is what a kept Dir remembers so a later Start reuses its data.
type clusterState struct {
	ClusterID string      `json:"cluster_id"`
	Nodes     []nodeState `json:"nodes"`
}

type nodeState struct {
	ID             int `json:"id"`
	Port           int `json:"port"`
	ControllerPort int `json:"controller_port"`
}

func saveState(path string, c *Cluster) error {
	s := clusterState{ClusterID: c.clusterID}
	for _, n := range c.nodes {
		s.Nodes = append(s.Nodes, nodeState{n.ID, n.Port, n.ControllerPort})
	}
	b, _ := json.MarshalIndent(s, "", "  ")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("apachekafka: %w", err)
	}
	return nil
}

// loadState fills c from a kept Dir formatted by an earlier Start with as many nodes; false when
// there is none (or it does not match), and the caller formats afresh.
func loadState(path string, c *Cluster) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var s clusterState
	if json.Unmarshal(b, &s) != nil || len(s.Nodes) != c.opts.Nodes {
		return false
	}
	c.clusterID = s.ClusterID
	for _, ns := range s.Nodes {
		c.nodes = append(c.nodes, &Node{ID: ns.ID, Port: ns.Port, ControllerPort: ns.ControllerPort, dir: filepath.Join(c.dir, "node-"+strconv.Itoa(ns.ID)), c: c})
	}
	for _, n := range c.nodes {
		if n.writeConfig() != nil {
			return false
		}
	}
	return true
}
