// Package webhook is the webhook sink: a Kafka consumer group over the snapshot topics that
// delivers every snapshot to the subscriptions of its tenant and event type, signed per the
// Standard Webhooks specification.
//
// It owns: the in-memory subscription index (hook schema in PostgreSQL, refreshed by
// LISTEN/NOTIFY and a periodic reload), per-endpoint queues with concurrency, rate limits and a
// circuit breaker, retries through delay topics, the dead-letter and attempt-log topics,
// auto-disable, ordered delivery per (subscription, root), SSRF protection at connect time, and
// the per-partition commit watermark.
//
// Goroutines and owners (Run starts and waits for all of them):
//   - the poll loop (Run's goroutine) polls the group client and hands records to partitions;
//   - one goroutine per assigned partition owns that partition's commit watermark, its ordered
//     chains and its held (not yet due) retries; everyone else sends it events;
//   - endpoint workers, at most deliver.endpoint_concurrency per endpoint, make the requests
//     and hand the outcome to the finisher, which produces attempt-log, retry and dead-letter
//     records and reports back to the partition once Kafka acknowledged them;
//   - the committer commits the partitions' published watermarks every second;
//   - the subscription listener (LISTEN/NOTIFY and reload ticker).
//
// An offset is committed only when every delivery of every record at or below it is delivered,
// finished (dead-lettered, disabled target) or durably handed to a retry topic.
//
// It imports config, avro and internal/kafkaconn; it must not import another stage (cdc,
// pipeline) or cmd.
package webhook
