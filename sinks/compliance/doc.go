// Package compliance is the compliance sink: a Kafka consumer group over the snapshot topics that
// writes every snapshot version of each configured root, Avro-encoded and keyed by the root key,
// to an append-only topic (cleanup.policy=delete, infinite retention by default) and the latest
// version per root to a compacted one, exactly once: records and consumer offsets commit in one
// Kafka transaction (kgo.GroupTransactSession, read_committed input).
//
// # Record
//
// The value is a record walhook.compliance.<event prefix>.Version:
//
//	key          string                      the root key, as the snapshot's record key
//	event_type   string                      "incident_instance_updated"
//	verb         string                      created, updated, deleted
//	version      long                        1, 2, 3… per root
//	commit_lsn   long                        of the source transaction
//	commit_time  long timestamp-millis
//	tenant       string                      "" when the root has no tenant column
//	snapshot     record Snapshot             the payload, typed
//
// Snapshot has one field per visible column of the root table (the webhook's visibility rules:
// no tenant, soft-delete or excluded column, except a tenant column kept by
// compliance.<topic>.keep_columns, filled from the snapshot's tenant), then one nullable record
// per cross-service reference with its projected columns, then one array of records per
// subordinate, nested like the model. For old_new roots it is the "new" object; a deleted version
// carries the last object. Column types come from PostgreSQL's catalog, read at start and again
// when a payload shows a column the schema lacks:
//
//	int2, int4        int              int8, oid     long
//	float4            float            float8        double
//	bool              boolean          bytea         bytes
//	timestamptz       long timestamp-millis ('infinity' → int64 extremes)
//	date              int date         uuid          string uuid
//	numeric, json, jsonb, text, enums, timestamp, time, anything else   string (pg.type says which)
//	one-dimensional arrays             array of ["null", element]
//
// NULLable columns are ["null", T] with default null, so adding a nullable column is a BACKWARD
// compatible change; a NOT NULL column added later, or a changed type, is refused with
// ErrIncompatible before anything is written.
//
// # Schemas
//
// With a schema registry the schema is registered under "<topic>-value" (TopicNameStrategy), the
// subject's compatibility set to BACKWARD, and the value framed in the Confluent wire format. The
// sink checks BACKWARD compatibility itself too (some registries accept anything). Without a
// registry the value uses Avro single-object encoding with the schema in the schema topic
// (kafka.topic_prefix + "schemas"), checked against the previous schema this process used.
//
// The package owns the compliance topics and their schemas. It imports avro, config and
// internal/kafkaconn; it must not import the other stages (cdc, pipeline, sinks/webhook).
package compliance
