// Package kafkaconn turns config.Kafka into franz-go client options (seed brokers, client id,
// TLS, SASL; the stages' consumer-group timeouts and static membership) and creates the topics a
// stage needs. Every stage that talks to Kafka goes through
// it, so connection settings mean the same thing everywhere.
//
// It imports config and franz-go only; it must not import any stage package.
package kafkaconn
