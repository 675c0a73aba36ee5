package config

// The values of bubbleup.on_poison, compliance.on_poison and deliver.on_poison.
const (
	// PoisonDeadLetter copies a record the stage cannot process to the stage's poison topic
	// (PoisonTopic), counts it and goes on with the next record.
	PoisonDeadLetter = "dead_letter"
	// PoisonStop stops the stage with an error naming the record and how to skip it.
	PoisonStop = "stop"
	// DefaultOnPoison is every stage's default.
	DefaultOnPoison = PoisonDeadLetter
)

// The stages that dead-letter poison records, as `walhook dlq --stage` names them.
const (
	StageBubbleUp   = "bubbleup"
	StageCompliance = "compliance"
	StageDeliver    = "deliver"
)

// PoisonStages are the stages with a poison topic, in pipeline order.
func PoisonStages() []string { return []string{StageBubbleUp, StageCompliance, StageDeliver} }

// PoisonTopic is where a stage copies the records it cannot process (undecodable, or refused
// for good by the broker when produced): kafka.topic_prefix + the stage's group + ".poison".
// The webhook sink's failed deliveries have their own topic (WebhookDeadLetterTopic); this one
// holds records of its input. "" for an unknown stage.
func (c *Config) PoisonTopic(stage string) string {
	if g := c.StageGroup(stage); g != "" {
		return g + ".poison"
	}
	return ""
}

// StageGroup is the Kafka consumer group id of a stage with a poison topic; "" for another.
func (c *Config) StageGroup(stage string) string {
	var group, def string
	switch stage {
	case StageBubbleUp:
		group, def = c.BubbleUp.Group, DefaultBubbleUpGroup
	case StageCompliance:
		group, def = c.Compliance.Group, DefaultComplianceGroup
	case StageDeliver:
		group, def = c.Deliver.Group, DefaultDeliverGroup
	default:
		return ""
	}
	if group == "" {
		group = def
	}
	return c.Kafka.TopicPrefix + group
}

// OnPoison is the stage's on_poison setting, defaulted.
func (c *Config) OnPoison(stage string) string {
	var v string
	switch stage {
	case StageBubbleUp:
		v = c.BubbleUp.OnPoison
	case StageCompliance:
		v = c.Compliance.OnPoison
	case StageDeliver:
		v = c.Deliver.OnPoison
	}
	if v == "" {
		return DefaultOnPoison
	}
	return v
}

// onPoison checks one stage's on_poison value.
func (v *checker) onPoison(path, value string) {
	switch value {
	case "", PoisonDeadLetter, PoisonStop:
	default:
		v.add(path, "%q is not one of %q (copy the record to the stage's poison topic, count it and go on; the default) or %q (stop the stage with an error naming the record)",
			value, PoisonDeadLetter, PoisonStop)
	}
}
