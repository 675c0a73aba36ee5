// Package e2e holds BenchmarkCommitToWebhook, the end-to-end latency benchmark of `make bench`:
// embedded PostgreSQL, the kfake broker with its schema registry, and the cdc, bubbleup and
// deliver stages wired in this process as `walhook dev` wires them, delivering to a loopback
// receiver while a paced writer commits a steady number of transactions per second. It measures
// the time from each transaction's commit (a clock_timestamp() the transaction writes into the
// row it updates) to the receipt of the webhook carrying it. See docs/benchmarks.md.
//
// The package has no code outside its benchmark; it must not be imported.
package e2e
