// Package catalog is walhook's event catalog: for every root of the model and every event
// (created, updated, deleted) a JSON Schema (draft 2020-12) of the webhook payload in each form a
// subscription can choose (bare, which for an old_new root is {"old", "new"}, and envelope),
// derived from the model and the column types in PostgreSQL's catalog; and an AsyncAPI 3
// document that describes both ways downstream systems subscribe: the signed webhooks and the
// Kafka topics (snapshot and compliance topics with their keys, headers, Avro value schemas and
// the consumer settings they need).
//
// The schemas follow what the pipeline writes (pipeline/doc.go "Payload"): every visible column
// is present (null when nullable and null), subordinate arrays are arrays of objects nested like
// the model, references are objects or null. Objects are closed (additionalProperties false):
// a schema says exactly what a payload holds, so a column added to a table shows up as a new
// property the next time the catalog is derived.
//
// `walhook api` serves the event types at /v1/event-types; `walhook catalog export` writes the
// AsyncAPI document. The package reads PostgreSQL (and the schema registry, when one is
// configured) and writes nothing. It imports config, avro and sinks/compliance (for the column
// facts and Avro schemas the compliance sink derives); no stage imports it.
package catalog
