// Package cdc is the change-data-capture stage: it reads committed changes of the entity
// model's tables from a PostgreSQL logical replication slot (pgoutput, protocol version 2 with
// streaming of large transactions) and writes them to Kafka change topics, keyed by root, as
// Avro change records, with a transaction-end marker per root per source transaction and LSN
// watermarks on the reference topics.
//
// # Reading path
//
// stage.go (New, Run: the order of start-up) → lock.go (one active reader) → setup.go
// (wal_level, publication, replica identity, slot) → stream.go (the replication loop;
// readbatch.go, how its connection reads in batches) →
// txn.go (transaction assembly, record production; truncate.go, TRUNCATE) → route.go / index.go (keys and topics) →
// spill.go (streamed transactions) → ack.go (the confirmed LSN).
//
// # Goroutines
//
// Run owns every goroutine and waits for all of them before it returns:
//   - the stream goroutine (Run's own) owns the replication connection, the catalog
//     connection, the relation cache, the spill buffers and the key index;
//   - the heartbeat goroutine owns the lock connection (the advisory lock lives on it) and
//     writes pg_logical_emit_message heartbeats on it;
//   - kgo's goroutines call the produce promises, which only touch the tracker (ack.go).
//
// # Positions
//
// The LSN confirmed to PostgreSQL (standby status write/flush/apply) is the end LSN of the
// newest transaction that Kafka acknowledged together with every earlier one. It is also
// recorded, with the slot name, in the compacted topic <prefix>cdc.state, so a slot that
// disappears is detected rather than silently recreated.
//
// # Snapshots
//
// snapshot.go / snapshot_chunk.go / snapshot_progress.go take the initial snapshot of a new slot
// and on-demand re-snapshots with watermarks while the stream runs (the snapshot loop goroutine
// reads chunks; the stream goroutine drops rows changed between a chunk's watermarks and writes
// the rest). A read record carries the commit LSN, xid and commit time of the chunk's high
// watermark transaction, and a TxnEnd follows for every root it touched. See docs/cdc.md.
//
// # Records
//
// Every record carries the headers walhook-kind (change, txn-end, watermark, truncate,
// truncate-end), walhook-table, walhook-op and walhook-lsn (the commit LSN as X/X). A TRUNCATE
// goes to every partition of each topic of the truncated tables (truncate.go). See
// docs/architecture.md and docs/cdc.md.
//
// It imports config, avro and internal/kafkaconn; it must not import pipeline, sinks or cmd.
package cdc
