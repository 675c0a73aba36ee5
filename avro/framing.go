package avro

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
)

// Registry turns writer schemas into wire prefixes and framed values back
// into writer schemas. ConfluentRegistry and TopicRegistry implement it.
type Registry interface {
	// Prefix registers schema (once per process; cached) for values of
	// topic and returns the prefix to write before each body. The returned
	// slice is shared: do not modify it.
	Prefix(ctx context.Context, topic string, schema *Schema) ([]byte, error)
	// Resolve returns the writer schema text of a framed value and the body
	// after the prefix (aliasing value).
	Resolve(ctx context.Context, value []byte) (schemaJSON string, body []byte, err error)
}

// Errors callers branch on.
var (
	// ErrNotFramed: the value does not start with the registry's magic bytes.
	ErrNotFramed = errors.New("avro: value is not framed for this registry")
	// ErrUnknownSchema: the writer schema of a value cannot be found.
	ErrUnknownSchema = errors.New("avro: unknown writer schema")
	// ErrRegistryUnavailable: the registry could not be asked (unreachable, an error answer
	// other than not found): the value may be fine, and the lookup is worth retrying.
	ErrRegistryUnavailable = errors.New("avro: schema registry unavailable")
)

const (
	confluentMagic     = 0x00
	confluentHeader    = 5
	singleObjectHeader = 10
)

// ConfluentPrefix is the Confluent wire format header: 0x00 and the schema
// id, 4 bytes big-endian.
func ConfluentPrefix(id uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{confluentMagic}, id)
}

// SplitConfluent parses a Confluent-framed value.
func SplitConfluent(value []byte) (id uint32, body []byte, err error) {
	if len(value) < confluentHeader || value[0] != confluentMagic {
		return 0, nil, fmt.Errorf("%w: want 0x00 and a 4-byte schema id, got %d bytes", ErrNotFramed, len(value))
	}
	return binary.BigEndian.Uint32(value[1:]), value[confluentHeader:], nil
}

// SingleObjectPrefix is the Avro single-object encoding header: 0xC3 0x01
// and the schema's CRC-64-AVRO fingerprint, 8 bytes little-endian.
func SingleObjectPrefix(fingerprint uint64) []byte {
	return binary.LittleEndian.AppendUint64([]byte{0xC3, 0x01}, fingerprint)
}

// SplitSingleObject parses an Avro single-object encoded value.
func SplitSingleObject(value []byte) (fingerprint uint64, body []byte, err error) {
	if len(value) < singleObjectHeader || value[0] != 0xC3 || value[1] != 0x01 {
		return 0, nil, fmt.Errorf("%w: want 0xC3 0x01 and an 8-byte fingerprint, got %d bytes", ErrNotFramed, len(value))
	}
	return binary.LittleEndian.Uint64(value[2:]), value[singleObjectHeader:], nil
}
