package compliance

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/walhook/walhook/avro"
)

// ErrIncompatible: a derived schema cannot read the records already written to its topic. The
// sink stops before writing anything with it.
var ErrIncompatible = errors.New("compliance: schema change is not backward compatible")

// framer registers compliance schemas and returns the prefix written before each body.
type framer interface {
	prefix(ctx context.Context, topic string, s *avro.Schema) ([]byte, error)
}

// confluentFramer registers under TopicNameStrategy subjects, "<topic>-value", with the subject's
// compatibility set to BACKWARD, and frames in the Confluent wire format.
type confluentFramer struct {
	client *sr.Client
	onNew  func(topic string) // counts a registration that created a new schema version

	mu       sync.Mutex
	prefixes map[string][]byte // subject + "\x00" + fingerprint → prefix; guarded by mu
}

// Subject is the registry subject of the compliance records of topic (TopicNameStrategy).
func Subject(topic string) string { return topic + "-value" }

func (f *confluentFramer) prefix(ctx context.Context, topic string, s *avro.Schema) ([]byte, error) {
	subject := Subject(topic)
	key := fmt.Sprintf("%s\x00%x", subject, s.Fingerprint)
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.prefixes[key]; ok {
		return p, nil
	}
	latest, err := f.client.SchemaByVersion(ctx, subject, -1)
	switch {
	case err == nil:
		if err := backward(s.JSON, latest.Schema.Schema); err != nil {
			return nil, incompatible(subject, latest.Version, err)
		}
		res, err := f.client.CheckCompatibility(ctx, subject, -1, sr.Schema{Schema: s.JSON, Type: sr.TypeAvro})
		if err != nil {
			return nil, fmt.Errorf("compliance: schema registry compatibility check for subject %q: %w", subject, err)
		}
		if !res.Is {
			return nil, incompatible(subject, latest.Version, errors.New(strings.Join(res.Messages, "; ")))
		}
	case !notFound(err):
		return nil, fmt.Errorf("compliance: schema registry: latest schema of subject %q: %w; check schema_registry.url", subject, err)
	}
	for _, r := range f.client.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatBackward}, subject) {
		if r.Err != nil {
			return nil, fmt.Errorf("compliance: schema registry: set compatibility BACKWARD on subject %q: %w", subject, r.Err)
		}
	}
	before := -1
	if err == nil {
		before = latest.Version
	}
	ss, err := f.client.CreateSchema(ctx, subject, sr.Schema{Schema: s.JSON, Type: sr.TypeAvro})
	if err != nil {
		var re *sr.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusConflict {
			return nil, incompatible(subject, before, err)
		}
		return nil, fmt.Errorf("compliance: schema registry: register schema under subject %q: %w", subject, err)
	}
	if ss.Version > before && f.onNew != nil {
		f.onNew(topic)
	}
	p := avro.ConfluentPrefix(uint32(ss.ID))
	f.prefixes[key] = p
	return p, nil
}

func notFound(err error) bool {
	var re *sr.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}

func incompatible(subject string, version int, why error) error {
	return fmt.Errorf("%w: subject %q version %d: %v; the table changed in a way readers of older compliance records "+
		"cannot follow (a column's type changed, or a NOT NULL column was added): revert the change, add the column "+
		"as nullable, or set the subject's compatibility to NONE and move consumers to the new schema", ErrIncompatible, subject, version, why)
}

// registryFramer frames through an avro.Registry (single-object encoding with the schema topic
// when no registry is configured). It checks each new schema of a topic against the previous one
// this process used: the schema topic keeps no per-topic history.
type registryFramer struct {
	reg   avro.Registry
	onNew func(topic string)

	mu   sync.Mutex
	last map[string]*avro.Schema // topic → schema of the last prefix; guarded by mu
}

func (f *registryFramer) prefix(ctx context.Context, topic string, s *avro.Schema) ([]byte, error) {
	f.mu.Lock()
	prev := f.last[topic]
	f.mu.Unlock()
	if prev != nil && prev.Fingerprint != s.Fingerprint {
		if err := backward(s.JSON, prev.JSON); err != nil {
			return nil, incompatible(topic, -1, err)
		}
	}
	p, err := f.reg.Prefix(ctx, topic, s)
	if err != nil {
		return nil, fmt.Errorf("compliance: schema for topic %s: %w", topic, err)
	}
	f.mu.Lock()
	if f.last[topic] == nil || f.last[topic].Fingerprint != s.Fingerprint {
		f.last[topic] = s
		if f.onNew != nil {
			f.onNew(topic)
		}
	}
	f.mu.Unlock()
	return p, nil
}
