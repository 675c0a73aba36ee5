// Package apachekafka runs real Apache Kafka brokers (KRaft mode) on loopback for tests,
// benchmarks and `walhook dev --kafka apache`: the part users run, where internal/embedkafka runs
// kfake, an in-process test broker.
//
// Resolve fetches a pinned Kafka version and its dependencies with Maven from Maven Central into
// a cache directory outside the repository (WALHOOK_KAFKA_CACHE, else the user's cache directory,
// ~/.cache/walhook/apache-kafka/<version>), once; later runs reuse it and need no network. No jar
// is ever written inside the repository. Java (17 or newer) and Maven must be installed; when one is
// missing the error names it and how to install it.
//
// Start writes one server.properties per node, formats each node's storage with Kafka's own
// StorageTool, starts one JVM per node on free ports of 127.0.0.1 with a small heap, and returns
// once the cluster answers metadata with every broker, a transactional producer has committed (so
// __transaction_state exists and has leaders) and a group coordinator answers (so
// __consumer_offsets exists). Two shapes: one combined broker+controller node, or three combined
// nodes forming a three-voter controller quorum with replication factor 3 and
// min.insync.replicas=2 for every internal topic.
//
// Lifetime: a Cluster owns its JVMs. Close kills them and removes the temporary directory. Each
// JVM is started from an OS thread locked to the goroutine that waits for it, with Pdeathsig
// SIGKILL on Linux, so a test binary that fails, panics or is SIGKILLed leaves no JVM behind
// (TestNoJVMOutlivesItsParent proves it). Nodes can be killed (SIGKILL), restarted on the same
// data and ports, and paused (SIGSTOP/SIGCONT) for fault tests.
//
// It must not import walhook packages other than internal/maven (which resolves the jars) and
// internal/childproc (which starts the JVMs).
package apachekafka
