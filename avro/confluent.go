package avro

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/twmb/franz-go/pkg/sr"
)

// ConfluentRegistry frames values in the Confluent wire format and
// registers schemas with a Confluent-compatible schema registry under
// TopicRecordNameStrategy subjects, "<topic>-<record full name>", so one
// topic can carry several record types (changes and markers).
type ConfluentRegistry struct {
	client *sr.Client

	// registerMu serializes registrations so each schema registers once
	// per process even when many goroutines first meet it together. It is
	// taken before mu.
	registerMu sync.Mutex

	mu       sync.RWMutex
	prefixes map[prefixKey][]byte // guarded by mu
	schemas  map[uint32]string    // schema id → text; guarded by mu
}

type prefixKey struct {
	subject     string
	fingerprint uint64
}

// NewConfluentRegistry returns a Registry backed by client.
func NewConfluentRegistry(client *sr.Client) Registry {
	return &ConfluentRegistry{client: client, prefixes: map[prefixKey][]byte{}, schemas: map[uint32]string{}}
}

// Subject is the TopicRecordNameStrategy subject of schema's records in topic.
func Subject(topic string, schema *Schema) string { return topic + "-" + schema.FullName }

// Prefix implements Registry.
func (r *ConfluentRegistry) Prefix(ctx context.Context, topic string, schema *Schema) ([]byte, error) {
	key := prefixKey{Subject(topic, schema), schema.Fingerprint}
	if p, ok := r.cachedPrefix(key); ok {
		return p, nil
	}
	r.registerMu.Lock()
	defer r.registerMu.Unlock()
	if p, ok := r.cachedPrefix(key); ok {
		return p, nil // registered by a goroutine we waited for
	}
	id, err := r.client.RegisterSchema(ctx, key.subject, sr.Schema{Schema: schema.JSON, Type: sr.TypeAvro}, -1, -1)
	if err != nil {
		return nil, registerError(key.subject, err)
	}
	p := ConfluentPrefix(uint32(id))
	r.mu.Lock()
	r.prefixes[key] = p
	r.schemas[uint32(id)] = schema.JSON
	r.mu.Unlock()
	return p, nil
}

func (r *ConfluentRegistry) cachedPrefix(key prefixKey) ([]byte, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.prefixes[key]
	return p, ok
}

// registerError names the subject and, for an incompatible schema, the fix.
func registerError(subject string, err error) error {
	var re *sr.ResponseError
	if errors.As(err, &re) && re.StatusCode == 409 {
		return fmt.Errorf("avro: schema registry rejected the new schema for subject %q as incompatible: %w; "+
			"the table changed in a way readers of older records cannot follow (a column's type changed, or a "+
			"column lost its null default): revert the change, or set the subject's compatibility to NONE and "+
			"move consumers to the new schema", subject, err)
	}
	return fmt.Errorf("avro: registering schema for subject %q: %w", subject, err)
}

// Resolve implements Registry.
func (r *ConfluentRegistry) Resolve(ctx context.Context, value []byte) (string, []byte, error) {
	id, body, err := SplitConfluent(value)
	if err != nil {
		return "", nil, err
	}
	r.mu.RLock()
	text, ok := r.schemas[id]
	r.mu.RUnlock()
	if ok {
		return text, body, nil
	}
	s, err := r.client.SchemaByID(ctx, int(id))
	var re *sr.ResponseError
	switch {
	case errors.As(err, &re) && re.StatusCode == http.StatusNotFound:
		return "", nil, fmt.Errorf("%w: schema id %d: %w", ErrUnknownSchema, id, err)
	case err != nil:
		return "", nil, fmt.Errorf("%w: looking up schema id %d: %w", ErrRegistryUnavailable, id, err)
	}
	r.mu.Lock()
	r.schemas[id] = s.Schema
	r.mu.Unlock()
	return s.Schema, body, nil
}
