package main

import (
	"github.com/spf13/cobra"

	"github.com/walhook/walhook/sinks/compliance"
)

func newComplyCommand() *cobra.Command {
	return newStageCommand("comply", "Write every snapshot version to Avro compliance topics, exactly once",
		`comply consumes the snapshot topics as a consumer group and writes each version, as a typed Avro
record derived from the model and the table columns, to an append-only topic per root and the latest
version per root to a compacted topic, in Kafka transactions. Schemas are registered BACKWARD
compatible; an incompatible column change stops the sink before anything is written.`,
		complyService)
}

func complyService(p *process) (service, error) {
	sink, err := compliance.New(p.cfg, compliance.WithLogger(p.log.Named("comply")), compliance.WithRegisterer(p.reg))
	if err != nil {
		return service{}, err
	}
	return service{name: "comply", run: sink.Run}, nil
}
