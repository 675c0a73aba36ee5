package avro

import "sync"

// DecoderCache compiles each writer schema once. Readers resolve a schema
// text per record (Registry.Resolve) and look its decoder up here. Safe for
// concurrent use; schemas are few and never evicted.
type DecoderCache struct {
	mu       sync.RWMutex
	decoders map[string]*ChangeDecoder // schema text → decoder; guarded by mu
}

// Decoder returns the compiled decoder of schemaJSON.
func (c *DecoderCache) Decoder(schemaJSON string) (*ChangeDecoder, error) {
	c.mu.RLock()
	d, ok := c.decoders[schemaJSON]
	c.mu.RUnlock()
	if ok {
		return d, nil
	}
	d, err := NewChangeDecoder(schemaJSON)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.decoders == nil {
		c.decoders = map[string]*ChangeDecoder{}
	}
	c.decoders[schemaJSON] = d
	return d, nil
}

// Decode decodes body with the decoder of schemaJSON.
func (c *DecoderCache) Decode(schemaJSON string, body []byte) (*Change, error) {
	d, err := c.Decoder(schemaJSON)
	if err != nil {
		return nil, err
	}
	return d.Decode(body)
}
