// Package chunked carries Kafka record values larger than kafka.max_record_bytes as a group of
// chunk records that consumers reassemble before they process anything.
//
// # Wire format
//
// A value of N bytes above the limit becomes count = ceil(N / chunk size) records on the same
// topic and partition, produced in order by one producer (in one Kafka transaction for the
// transactional stages; in order, before anything else of that partition's producer, for the
// idempotent cdc stage). Every chunk has the header
//
//	walhook-chunk: v1 <group> <index> <count> <total bytes> <crc32c of the whole value>
//
// (space-separated; group is 16 random hex digits). Chunks 0..count-2 are keyed by the
// original key plus a fixed suffix (KeySuffixLen bytes: NUL, 0xff, "chunk", big-endian index) so
// that a compacted topic keeps every one of them; Partitioner places them by the original key.
// The last chunk keeps the original key and carries the original record's headers: on a
// compacted topic it is the record that supersedes the key's previous value.
//
// # Reassembly
//
// An Assembler rewrites fetched records: chunks disappear, and the last chunk of a complete
// group becomes one record with the whole value, the original key and headers and the last
// chunk's offset. A group whose last chunk arrives with chunks missing, out of order or with
// a wrong size or checksum becomes a record that Err reports as ErrCorrupt, so that a stage
// treats it like any record it cannot decode. A chunk that no group is waiting for (the rest of
// a group whose producer died before finishing it: cdc writes the whole transaction again, or
// an older version a compacted topic has not cleaned yet) is dropped and counted. A group is
// given up as corrupt when its idempotent producer writes another record on the partition before
// finishing it, or (Abandon) when no chunk of it arrived for IdleTimeout.
//
// It imports franz-go only.
package chunked
