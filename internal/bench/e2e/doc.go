// Package e2e holds the end-to-end latency benchmarks of `make bench`. BenchmarkCommitToWebhook runs
// embedded PostgreSQL, the kfake broker with its schema registry, and the cdc, bubbleup and
// deliver stages wired in this process as `walhook dev` wires them, delivering to a loopback
// receiver while a paced writer commits a steady number of transactions per second. It measures
// the time from each transaction's commit (a clock_timestamp() the transaction writes into the
// row it updates) to the receipt of the webhook carrying it. BenchmarkCommitToWebhookSweep runs
// the same pipeline at rising rates and says, per rate, which stage's backlog grew. See
// docs/benchmarks.md.
//
// The package has no code outside its benchmarks; it must not be imported.
package e2e
