// Package embedkafka runs an in-process Kafka-protocol broker
// (github.com/twmb/franz-go/pkg/kfake) and a Confluent-compatible schema
// registry (github.com/twmb/franz-go/pkg/sr/srfake) on real TCP ports of
// 127.0.0.1. `walhook dev` and every test use it; production points at a real
// cluster instead.
//
// # What it owns
//
// A Stack owns the kfake cluster, the registry's listener, its http.Server and
// the one goroutine serving it, the registry journal file, and with
// Options.ExpireSilentMembers the member expiry's goroutine and client. Close
// stops them in this order: member expiry (and waits for its goroutine),
// registry HTTP server (and waits for its goroutine), the journal file, then
// the cluster. kfake's own goroutines (its run loop,
// listeners and connections) are stopped by kfake.Cluster.Close, which does not
// wait for them to return; that is an upstream limit, and they hold no
// resources of ours once Close returns. Start's ctx only bounds startup: the
// stack lives until Close.
//
// # Choices
//
//   - One broker by default: walhook needs no replication in dev, one port is
//     easier to reason about with kcat, and a single node restarts in place on
//     the same DataDir. Options.NumBrokers asks for more (Options.Port then
//     fixes the first broker's port only).
//   - Auto topic creation is allowed, but only takes effect when a client asks
//     for it in its metadata request (kcat's producer does; kgo only with
//     kgo.AllowAutoTopicCreation). walhook creates its topics explicitly with
//     kadm and never asks, so a missing topic still fails like it does against
//     production, while `kcat -P -t scratch` just works in dev.
//   - Compaction: kfake compacts topics with cleanup.policy=compact every
//     log.cleaner.backoff.ms (default there: one hour). We set it to
//     CleanerBackoff (1s) so compacted changelogs behave like a real cluster's
//     in dev and in tests; Options.CleanerBackoff changes it, NoCompaction
//     turns it off. kfake never compacts a partition's last batch (the
//     "active segment"), like Kafka never compacts the active segment. Unlike
//     Kafka, whose cleaner stops at the first unstable offset, kfake
//     (v0.0.0-20260918054303-01f206a7e32c) also compacts batches of
//     transactions that are still open: a committed record superseded by a
//     record of an open transaction is dropped, and when that transaction
//     aborts (a SIGKILLed writer's does at its transaction timeout) the key
//     is gone from the topic. A restore from such a changelog loses state, so
//     the e2e broker, whose stages are SIGKILLed mid-transaction, runs with
//     NoCompaction.
//   - Member expiry: kfake (same version) sometimes never expires a classic
//     group member whose process died while its JoinGroup was parked. It arms
//     a member's session timer when it replies to the JoinGroup; the reply to
//     a closed connection fails (a coin toss: the send can still land in the
//     connection's buffer), reply() then skips the timer, and the leader's
//     SyncGroup makes the group Stable, which stops the pending-sync timer
//     that would have removed the member. The dead member keeps the
//     partitions the leader gave it until the next rebalance, i.e. forever in
//     a quiet group. Options.ExpireSilentMembers removes such members
//     (memberWatch); the e2e broker uses it, everything else leaves expiry to
//     kfake.
//   - Persistence: with Options.DataDir set, kfake persists topics, records,
//     group offsets and producer ids there (kfake.DataDir). srfake itself is in
//     memory only, so schema ids written into old records would point nowhere
//     after a restart. We therefore journal every successful
//     POST /subjects/{subject}/versions to DataDir/schema-registry.jsonl and
//     seed the registry from it on Start, keeping every id stable. Not
//     journaled (documented limits of dev mode): deletes of subjects or
//     versions (a deleted schema comes back after a restart), and
//     compatibility or mode changes. Schemas registered in-process through
//     srfake's Go API (SeedSchema, RegisterSchema) bypass HTTP and are not
//     journaled either; walhook only talks HTTP.
//
// This package must not import any other walhook package: everything else
// imports it (through internal/kafkatest in tests).
package embedkafka
