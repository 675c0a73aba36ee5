package kafkaconn

import (
	"strings"
	"testing"

	"github.com/walhook/walhook/config"
)

func TestOpts(t *testing.T) {
	if _, err := Opts(config.Kafka{}); err == nil || !strings.Contains(err.Error(), "WALHOOK_BROKERS") {
		t.Fatalf("no brokers: %v", err)
	}
	for _, m := range []string{"PLAIN", "SCRAM-SHA-256", "scram-sha-512"} {
		if _, err := Opts(config.Kafka{Brokers: []string{"b:9092"}, SASL: config.SASL{Mechanism: m, Username: "u", Password: "p"}}); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
	}
	if _, err := Opts(config.Kafka{Brokers: []string{"b:9092"}, SASL: config.SASL{Mechanism: "GSSAPI"}}); err == nil {
		t.Fatal("GSSAPI accepted")
	}
	if _, err := Opts(config.Kafka{Brokers: []string{"b:9092"}, TLS: config.TLS{Enabled: true, CertFile: "x"}}); err == nil {
		t.Fatal("cert without key accepted")
	}
	if _, err := Opts(config.Kafka{Brokers: []string{"b:9092"}, TLS: config.TLS{Enabled: true, CAFile: "/nonexistent"}}); err == nil {
		t.Fatal("missing CA file accepted")
	}
}

func TestSamePolicy(t *testing.T) {
	if !samePolicy("compact,delete", "delete, compact") || samePolicy("compact", "delete") {
		t.Fatal("samePolicy")
	}
}
