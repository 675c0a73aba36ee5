package config_test

import (
	"strings"
	"testing"

	"github.com/walhook/walhook/config"
)

// TestOnPoisonValidated: every stage's on_poison is dead_letter by default, stop is accepted,
// and anything else is refused with the path, the line and the two values.
func TestOnPoisonValidated(t *testing.T) {
	base := head + "  roots:\n    - {table: incident.instance, key: id}\n"
	cfg, err := config.Parse([]byte(base), "walhook.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range config.PoisonStages() {
		if got := cfg.OnPoison(st); got != config.PoisonDeadLetter {
			t.Errorf("%s on_poison default %q, want dead_letter", st, got)
		}
		if topic := cfg.PoisonTopic(st); !strings.HasSuffix(topic, ".poison") || !strings.HasPrefix(topic, "walhook.") {
			t.Errorf("%s poison topic %q", st, topic)
		}
	}
	if cfg.PoisonTopic(config.StageDeliver) == cfg.Kafka.WebhookDeadLetterTopic() {
		t.Errorf("the webhook sink's poison topic is its delivery dead-letter topic %s", cfg.Kafka.WebhookDeadLetterTopic())
	}
	ok := base + "bubbleup: {on_poison: stop}\ncompliance: {on_poison: dead_letter}\ndeliver: {on_poison: stop}\n"
	if cfg, err = config.Parse([]byte(ok), "walhook.yaml"); err != nil {
		t.Fatal(err)
	} else if cfg.OnPoison(config.StageBubbleUp) != config.PoisonStop || cfg.OnPoison(config.StageDeliver) != config.PoisonStop {
		t.Errorf("on_poison stop not kept: %q %q", cfg.OnPoison(config.StageBubbleUp), cfg.OnPoison(config.StageDeliver))
	}
	for _, sec := range []string{"bubbleup", "compliance", "deliver"} {
		_, err := config.Parse([]byte(base+sec+":\n  on_poison: skip\n"), "walhook.yaml")
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		for _, want := range []string{sec + ".on_poison", `"skip"`, "dead_letter", "stop", "walhook.yaml:9"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s.on_poison: skip: error %q does not contain %q", sec, msg, want)
			}
		}
	}
}
