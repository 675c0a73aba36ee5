// Package kafkatest gives tests a Kafka cluster and schema registry through
// t-scoped helpers: Start, Client, TopicName, GroupName, CreateTopic,
// ConsumeAll and Eventually. Everything a helper starts is stopped by
// t.Cleanup.
//
// By default Start runs internal/embedkafka (kfake and srfake on free TCP
// ports of 127.0.0.1). Setting WALHOOK_TEST_BROKERS (comma-separated
// host:port) points the same tests at a real Kafka or Redpanda, and
// WALHOOK_TEST_REGISTRY_URL at a real schema registry (without it an srfake
// registry runs in process). Tests then see only Env.Brokers and
// Env.RegistryURL; Env.Cluster is nil, and tests that inject faults call
// Env.RequireCluster, which skips them.
//
// Only the test goroutine fails a test: helpers call t.Fatalf from the
// goroutine that called them and never from goroutines of their own.
//
// This package is for tests only and must not be imported by non-test code.
package kafkatest
