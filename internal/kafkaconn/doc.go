// Package kafkaconn turns config.Kafka into franz-go client options (seed brokers, client id,
// TLS, SASL; the stages' consumer-group timeouts and static membership) and creates the topics a
// stage needs. Every stage that talks to Kafka goes through
// it, so connection settings mean the same thing everywhere.
//
// Every client it configures produces with kafka.compression and kafka.max_record_bytes and
// places chunk records (internal/chunked) by their original key; topics it creates get
// max.message.bytes and existing ones are checked against it (records.go).
//
// It imports config, avro (AvroRegistry picks the stages' Avro framing), internal/chunked and franz-go
// only; it must not import any stage package.
package kafkaconn
