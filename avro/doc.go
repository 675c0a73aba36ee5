// Package avro owns walhook's record formats: the change records CDC writes
// (one Avro schema per table version), the TxnEnd and Watermark markers, the
// allocation-free encoder from pgoutput text cells, the decoder bubble-up
// uses, and the framing of Kafka values (Confluent wire format with a schema
// registry, Avro single-object encoding with a schema topic without one).
//
// It must not import any other walhook package; cdc, pipeline and sinks
// import it.
//
// # Change schema
//
// A table version's changes are records named walhook.<schema>.<table>.Change:
//
//	op          enum Op {create, update, delete, read}
//	table       string               "incident.instance"
//	commit_lsn  long
//	xid         long
//	commit_time long timestamp-micros
//	index       long                 row index in its source transaction
//	before      ["null", Row]        default null
//	after       ["null", Row]        default null
//	unchanged   array<string>        columns whose values were unchanged TOAST
//
// Row (walhook.<schema>.<table>.Row) has one field per column in column
// order, each ["null", T] with default null: unchanged TOAST values and
// before-images under REPLICA IDENTITY DEFAULT leave non-key columns null,
// and defaults make adding a column a backward-compatible evolution. Each
// field carries "pg.type" (typname) so a reader can tell jsonb from text.
// Names that are not Avro identifiers are escaped (each invalid byte becomes
// "_xHH") and the original is kept in "pg.name".
//
// # Type mapping (text format)
//
//	int2, int4           int
//	int8, oid            long
//	float4 / float8      float / double (NaN, ±Infinity kept)
//	numeric(p,s)         bytes decimal(p,s): unscaled big-endian two's complement,
//	                     text rescaled to s; more digits than p or s is an error, never rounded
//	numeric              string, pg.type "numeric": an unconstrained numeric has a
//	                     different scale per value (and NaN, ±Infinity), while an Avro
//	                     decimal has one fixed scale. Also numeric(p,s) with s<0 or s>p.
//	bool                 boolean
//	timestamptz          long timestamp-micros (UTC)
//	timestamp            long local-timestamp-micros (wall clock)
//	                     'infinity'/'-infinity' → int64 max/min; BC years supported
//	date                 int date; 'infinity'/'-infinity' → int32 max/min
//	time                 long time-micros
//	uuid                 string uuid
//	json, jsonb          string, pg.type tells them apart from text
//	bytea                bytes (hex output format required)
//	text, varchar, bpchar, name, citext, enums, interval, inet, money,
//	timetz, domains, anything else
//	                     string with pg.type
//	one-dimensional arrays
//	                     array of ["null", element type]; multi-dimensional values are
//	                     rejected with an error (pg_type cannot tell dimensions ahead)
//
// The encoder expects the replication session's settings: TimeZone=UTC,
// DateStyle=ISO, IntervalStyle=iso_8601, extra_float_digits=3,
// bytea_output=hex. Strings are copied as sent; the database encoding must
// be UTF8 for them to be valid Avro strings.
//
// Decoding maps back to Go: int32, int64, float32, float64, bool, string,
// []byte, time.Time (UTC; infinities are the int64 extremes, see
// IsInfiniteTime), Date, TimeOfDay, Decimal, JSON and []any.
//
// # Framing
//
// A Registry turns a Schema into the prefix written before each body and
// resolves framed values back to their writer schema. ConfluentRegistry
// writes 0x00 + 4-byte big-endian schema id and registers schemas under
// TopicRecordNameStrategy subjects (<topic>-<record full name>).
// TopicRegistry writes Avro single-object encoding (0xC3 0x01 + 8-byte
// little-endian CRC-64-AVRO fingerprint of the Parsing Canonical Form) and
// publishes each schema, keyed by its fingerprint in hex, to a compacted
// topic before the first record that uses it.
package avro
