package kafkatest

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
)

// TopicName returns a topic name unique to this call: base, the test's name
// and a random suffix, in Kafka's legal characters. Unique names let tests
// share a real cluster and run in parallel.
func TopicName(t testing.TB, base string) string { return uniqueName(t, base) }

// GroupName is TopicName for consumer groups.
func GroupName(t testing.TB, base string) string { return uniqueName(t, base) }

// TxnID is TopicName for transactional ids.
func TxnID(t testing.TB, base string) string { return uniqueName(t, base) }

func uniqueName(t testing.TB, base string) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("kafkatest: random name suffix: %v", err)
	}
	name := sanitize(t.Name())
	if len(name) > 150 { // Kafka caps topic names at 249 characters
		name = name[len(name)-150:]
	}
	return sanitize(base) + "." + name + "." + hex.EncodeToString(b[:])
}

// sanitize maps every character Kafka rejects in a topic name to '_'.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}
