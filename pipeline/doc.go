// Package pipeline is the bubble-up stage: a Kafka consumer group over the change topics that
// emits, for every source transaction that touched a root or any of its subordinates, exactly one
// complete, versioned snapshot of that root to the root's snapshot topic.
//
// It imports config, avro and internal/kafkaconn; it must not import cdc, sinks or cmd.
//
// # Reading path
//
// stage.go (New, Run, topics, state store) → loop.go (the Kafka transaction loop) → partition.go
// (one worker per input partition) → apply.go (rows into state, verbs) → payload.go (the JSON
// object) → refs.go (the reference reader) → refstore.go (reference versions, as-of lookups) →
// refprune.go (pruning, the group's horizon) → refhistory.go (the topics' history) → inexact.go
// (beyond the history) → restore.go (state from the changelog) → state.go (what is stored) →
// metrics.go.
//
// # Snapshot records
//
// Topic config.Kafka.SnapshotTopic(root) ("<prefix>snapshots.<event_prefix>"), keyed by the text
// of the root's key ("134"), value framed by the avro.Registry (Confluent wire format or Avro
// single-object encoding) with the fixed schema walhook.Snapshot (avro.SnapshotSchema,
// avro.AppendSnapshot, avro.DecodeSnapshot):
//
//	root_type     string   root table, "incident.instance"
//	event_prefix  string   "incident.instance"
//	key           string   "134"
//	tenant        string   text of the root's tenant column ("" when null)
//	event_type    string   "incident_instance_updated"
//	verb          enum Verb {created, updated, deleted}
//	version       long     1, 2, 3… per root: no gap, no repeat
//	commit_lsn    long     commit LSN of the source transaction
//	commit_time   long timestamp-micros
//	payload       string   the exact JSON body of the webhook in the bare form; for a root with
//	                       snapshot_form old_new, {"old": previous bare object or null, "new": current}
//
// Headers: walhook-event-type, walhook-version (decimal) and walhook-tenant. Snapshots are written
// in Kafka transactions: consumers (the webhook and compliance sinks) must read with
// read_committed.
//
// # Payload
//
// Root columns in table order minus the tenant column, the soft-delete column and excluded ones;
// then each reference as its projected columns (null when the referenced row is missing); then
// each subordinate array (without soft-deleted rows, ordered by order_by then key, nested arrays
// inside; a subordinate's parent column, tenant and soft-delete columns are left out).
// Timestamps are UTC ISO 8601 with milliseconds and Z, integers JSON numbers, numeric JSON
// number text, json/jsonb embedded, enums their text, bytea "\x…" hex, nulls null, empty arrays [].
//
// # Verbs
//
// created when the root row was inserted in the transaction (even if also updated); deleted when
// the soft-delete column turned true or the root row was hard-deleted (the payload is the last
// object); updated otherwise. Initial-snapshot rows (op read) build state and emit nothing unless
// bubbleup.emit_reads is set.
//
// # Initial snapshot
//
// CDC reads a pre-existing root and all its subordinates in one chunk, then writes one TxnEnd per
// root with header walhook-op: read. Changes that happen to a pre-existing root during the initial
// snapshot, before its chunk is read, produce no webhook; the root's first webhook is the first
// change after its read. A root whose first change is not its row's insert or read is marked
// partial (rootState.Partial): its transactions update state only, counted in
// walhook_bubbleup_orphan_changes_total and logged at debug, until the read TxnEnd (or the root
// row's insert or read) clears the mark. A transaction of a root with no root row never emits.
//
// # State and exactly once
//
// Each input partition (change topic, partition) belongs to one worker goroutine; the transaction
// loop sends it work. A root's state (root row, subordinate rows of every depth, version, last
// applied commit LSN, the open source transaction) is JSON in a Pebble store under
// ('S', root index, partition, root key) and in the compacted changelog topic
// "<prefix><bubbleup.group>.changelog" (partition = input partition, key "<event_prefix>\x00<root
// key>"). Consuming, producing snapshots and changelog records, and committing offsets happen in
// one Kafka transaction (kgo.GroupTransactSession). Workers apply a batch to an in-memory overlay;
// Pebble is written only after the commit succeeded; an abort drops the overlay and the session
// rewinds to the committed offsets. On every assignment of a partition its Pebble range is dropped
// and restored from the changelog (read_committed, up to the last stable offset, in large batches),
// so a crash between the Kafka commit and the Pebble write loses nothing. A change or TxnEnd whose
// commit LSN is at or below the root's applied LSN is a replay and is skipped.
//
// Latency (docs/benchmarks.md "Bubble-up transaction latency"): each partition's records are
// produced as soon as its worker is done; the loop flushes before it decides to commit (kgo
// commits whatever succeeded when asked to, so the decision waits for every promise); the Pebble
// write after a commit is posted to the worker and overlaps the next poll (a failed write fails
// the worker's next batch); Pebble runs without a WAL (restore rebuilds every assigned range); a
// worker keeps up to stateCacheRoots committed states decoded (a transaction works on a clone);
// and a poll that took a fetch buffered during a long transaction waits up to 5 ms for the fresh
// fetch, so what arrived meanwhile rides in this transaction rather than the next.
//
// # References as of the source transaction
//
// A snapshot at commit LSN L projects each cross-service reference from the newest version of the
// referenced row with commit LSN ≤ L, and shows null when the row did not exist then or was
// deleted (or its table truncated) at or before L. So version n of a root is a pure function of
// the database as of the n-th transaction that touched it: the same on a replay, a restore, a
// rebalance or a restart, and however far bubble-up runs behind (the contract asks only for "no
// earlier than the change"). This holds for created, updated and deleted versions and for
// re-emissions.
//
//   - One goroutine (refs.go refReader) reads every reference topic from its start (no group,
//     read_committed) into the reference store (refstore.go) and tracks the watermark of each
//     partition. A snapshot of a root with references waits until every partition of each
//     referenced topic has a watermark at or above L, then looks each reference up as of L.
//   - The store is in the stage's Pebble store, rebuilt from the topics on every start: every
//     version of every row, keyed ('V', table, row key, NUL, BE64 LSN), holding only the columns
//     some reference projects; a change of a row twice in one transaction keeps its last image.
//     A cache of the newest version of 16,384 recently looked-up rows (kept current by the
//     reader) answers the common lookup (nothing changed after L) without Pebble, and a Bloom
//     filter of the rows seen (8 MiB) spares the reader a seek for a row's previous version when
//     it has none: memory does not grow with the table.
//   - Pruning (refprune.go): a version goes once a newer version of its row superseded it and
//     either the superseding version is at or below the group's horizon (the LSN below which no
//     partition of the group will build a snapshot or re-emit, computed every 30 s from the
//     group's committed offsets and the LSN headers of the change records there) and a minute
//     old, or it is older than bubbleup.reference_history. The oldest version kept of a pruned row
//     is flagged, so a lookup below it is reported, never answered silently.
//   - History bound: versions stay available for bubbleup.reference_history (default 24h) after
//     they were superseded, in the store and in the reference topics, whose min.compaction.lag.ms
//     walhook sets to it (cdc creates them so; bubble-up raises a lower value at start, or stops
//     naming the command). A member that starts, restarts or takes over partitions behind the
//     newest reference versions rebuilds the ones its snapshots need from the topic as long as
//     it is less than reference_history behind (measured from when the cdc stage wrote the
//     superseding version). kfake (walhook dev, tests) compacts regardless of
//     min.compaction.lag.ms.
//   - Beyond the bound, never silently: the reader detects what compaction removed before it read
//     it (offsets skipped, refs.go refPartRead) and flags the versions after it; a lookup whose
//     answer may be among the removed versions shows the newest version the store has (the
//     contract's minimum), counts it in walhook_bubbleup_reference_inexact_total{root, reference,
//     reason}, logs root, key, reference, LSN and the setting to raise, and writes a record to
//     "<prefix><group>.inexact-references" in the snapshot's Kafka transaction, which `walhook
//     status` counts. bubbleup.reference_history_exceeded: stop stops the stage with that error
//     instead. A row first read by the initial snapshot after L has no known state before the
//     read: reported too (reason before_snapshot_read), never a reason to stop.
//
// # Truncation
//
// A TRUNCATE of a referenced table is a record on every partition of its reference topic,
// after the records of earlier transactions: header walhook-kind: truncate (walhook-table,
// walhook-lsn as on every record), key "walhook.truncate.<commit LSN>" (distinct, so compaction
// keeps every one), value a walhook.Watermark body with the truncating transaction's commit LSN.
// A lookup at L at or after it ignores every version below it (rows the truncating transaction
// inserted after its TRUNCATE carry its LSN and stay); one before it still sees them. Rows the
// transaction wrote before the TRUNCATE carry that LSN too: the reader remembers the keys of the
// transaction's changes on the partition (up to 65,536) and gives them a deleted version at the
// truncation (refs.go). For a table that re-emits, the first truncate record of a truncation
// gives every row alive below it a deleted version at its LSN (refstore.go truncateRows): each
// is a logged change, so the roots pointing at them re-emit with null.
//
// A TRUNCATE of a root's table or of one of its subordinates (any depth) is the same record on
// every partition of the root's change topic, at its place in the source transaction (its
// walhook-table header names the truncated table), and after the transaction's TxnEnds a
// walhook-kind: truncate-end record on every partition (a TxnEnd body of the root table with an
// empty root key). The worker applies the truncate to every root of its partition it changes
// (truncate.go): the root table's hard-deletes every root row, a subordinate table's drops that
// table's rows of every root that had some; at the truncate-end every root the truncation left
// pending gets its version, deleted or updated, like at a TxnEnd. Both scan the partition's state
// range; the roots changed join the open Kafka transaction.
//
// # Re-emission on reference change
//
// With reemit: true on a reference (config.Reference.Reemit, default off), a source transaction
// that changes a referenced row re-emits every root pointing at it: one updated snapshot, version
// n+1, commit LSN and time of that transaction, with the new projection (reemit.go).
//
//   - Every member's reference reader logs the changes (not reads) of the tables some reference
//     re-emits on in the reference store ('L', table, BE64 LSN, row key): one entry per row and
//     source transaction, pruned once below the group's horizon. A row changed twice re-emits its
//     roots twice, each with the row as of its own change.
//   - Each partition keeps in Pebble an index ('R', root index, partition, reference, referenced
//     key, NUL, root key), written at commit from the difference between a root's reference keys
//     when the transaction loaded it and after; a gone, soft-deleted or partial root points
//     nowhere. Restore rebuilds the index from the restored state.
//   - Each partition keeps the LSN up to which it handled reference changes: in the changelog
//     (key "<event_prefix>\x00\x00reemit", 8 bytes, written in the transaction that re-emitted)
//     and in Pebble ('M', root index, partition). A restart or the next owner after a rebalance
//     continues from it: nothing repeats, nothing is skipped.
//   - Changes are handled in LSN order, interleaved with the partition's own records. Before the
//     first record of a newer source transaction (LSN P) the worker waits until the reference
//     tables' low watermark reaches P, then handles the changes below P; at the end of a batch, if
//     changes are left, it handles them up to the low watermark once the partition is consumed to
//     the end offset the broker reports after that watermark was read. A change at L is thus
//     handled after every record of the partition at or below L and before any above it.
//   - A root is re-emitted for a change at L unless its applied LSN is at or above L (its own
//     TxnEnd of the same transaction emitted the one version, with the new reference), it has an
//     open source transaction (its TxnEnd will show the new reference), or it no longer points at
//     the row. Re-emitting sets its applied LSN to L; the snapshot projects every reference as of
//     L.
//   - The loop's poll also wakes when a low watermark passes a logged change, so an idle stage
//     re-emits; partitions that own roots but got no records take part in that transaction (the
//     loop tracks assignments for this).
//
// Limits: a change compacted away before a member read it (beyond bubbleup.reference_history) is
// not re-emitted; the next change of the row is, and reported as inexact. Turning reemit on for a
// stage that ran without it re-emits, once, the roots whose last version predates their row's
// newest change still in the reference topic. The idle rule trusts that the cdc stage's change-topic records of a transaction
// are readable once its reference watermark is: it produces them first, but to other partitions;
// a producer retry that delays only them would give that root's transaction a second version.
//
// # Goroutines
//
// Run owns: the transaction loop (Run's own goroutine), one worker per assigned input partition
// (started by the loop on the partition's first records, stopped on revoke or at exit), the
// reference reader (which also prunes the reference store between polls), the horizon tracker
// (refprune.go), and the short-lived goroutines that wait for the workers of one batch. Run
// returns after all of them stopped.
package pipeline
