// Package e2e is walhook's whole-system proof: PostgreSQL, a Kafka-protocol broker in its own
// process, the walhook binary's stages (cdc, two bubbleup, deliver, comply) as separate processes
// and webhook receivers on loopback, driven by a seeded randomized incident workload while a seeded
// nemesis SIGKILLs and restarts the stages. At the end it checks the guarantees of DESIGN.md
// against what the writer committed and what PostgreSQL holds.
//
// Everything lives in the test files: `go test ./internal/e2e` runs the short variant (about 30 s
// of workload), WALHOOK_E2E_DURATION=5m the long one (`make e2e`). WALHOOK_E2E_SEED fixes the seed
// of the workload and the nemesis; every run logs the seed it used.
//
// It imports the product's packages only to read what the product wrote (config for topic names,
// kafkaconn and avro to decode records, sinks/webhook for the webhook-id); it must not be imported.
package e2e
