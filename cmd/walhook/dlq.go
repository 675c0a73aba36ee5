package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/deadletter"
	"github.com/walhook/walhook/internal/kafkaconn"
	"github.com/walhook/walhook/sinks/webhook"
)

// newDLQCommand is `walhook dlq`: the poison records the stages dead-lettered (records they could
// not decode, or whose output the broker refused for good). Failed webhook deliveries are
// `walhook hooks replay`'s.
func newDLQCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "List, redrive and skip the poison records the stages dead-lettered",
		Long: `Each consuming stage copies an input record it cannot process (one it cannot decode, or whose output
the broker refuses for good, e.g. MESSAGE_TOO_LARGE) to its poison topic, kafka.topic_prefix + the
stage's group + ".poison", with headers naming the source topic, partition, offset and the reason,
and goes on (on_poison: dead_letter, the default). list shows them; redrive produces the original
record, byte for byte, to its source topic and partition, so the stage processes it again once the
cause is fixed; skip moves a stage stopped by on_poison: stop past the record it stopped at.
Webhook deliveries that failed are in webhook.dlq instead: see walhook hooks replay.`,
		Example: `  walhook dlq list
  walhook dlq list --stage bubbleup
  walhook dlq redrive --stage bubbleup --id 2-17
  walhook dlq redrive --stage compliance --all
  walhook dlq skip --stage deliver --topic walhook.snapshots.incident.instance --partition 1 --offset 42`,
	}
	cmd.AddCommand(dlqList(), dlqRedrive(), dlqSkip())
	return cmd
}

func stageFlag(cmd *cobra.Command, stage *string, required bool) {
	cmd.Flags().StringVar(stage, "stage", "", "stage: "+strings.Join(config.PoisonStages(), ", "))
	if required {
		_ = cmd.MarkFlagRequired("stage")
	}
}

func checkStage(stage string) error {
	if !slices.Contains(config.PoisonStages(), stage) {
		return fmt.Errorf("--stage %q: use one of %s", stage, strings.Join(config.PoisonStages(), ", "))
	}
	return nil
}

func dlqList() *cobra.Command {
	var f configFlags
	var stage string
	cmd := &cobra.Command{
		Use:   "list [--stage S]",
		Short: "List the poison records of every stage, or of one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.load()
			if err != nil {
				return err
			}
			stages := config.PoisonStages()
			if stage != "" {
				if err := checkStage(stage); err != nil {
					return err
				}
				stages = []string{stage}
			}
			var entries []stagedEntry
			for _, st := range stages {
				err := deadletter.Read(cmd.Context(), cfg, st, func(e deadletter.Entry) error {
					entries = append(entries, stagedEntry{st, e})
					return nil
				})
				if err != nil {
					return err
				}
			}
			return writeEntries(cmd.OutOrStdout(), entries)
		},
	}
	f.register(cmd)
	stageFlag(cmd, &stage, false)
	return cmd
}

type stagedEntry struct {
	stage string
	deadletter.Entry
}

func writeEntries(out io.Writer, entries []stagedEntry) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "STAGE\tID\tTIME\tSOURCE\tKEY\tBYTES\tREASON")
	for _, e := range entries {
		reason := e.Reason
		if len(reason) > 160 {
			reason = reason[:160] + "…"
		}
		fmt.Fprintf(w, "%s\t%d-%d\t%s\t%s\t%q\t%d\t%s\n", e.stage, e.Partition, e.Offset, e.At.UTC().Format(time.RFC3339),
			e.Source, truncate(string(e.Original.Key), 40), len(e.Original.Value), reason)
	}
	return w.Flush()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func dlqRedrive() *cobra.Command {
	var f configFlags
	var stage string
	var ids []string
	var all bool
	var partition int32
	var offset int64
	cmd := &cobra.Command{
		Use:   "redrive --stage S (--id P-O... | --partition P --offset N | --all)",
		Short: "Produce dead-lettered records again to their source topic and partition",
		Long: `redrive produces each chosen poison record's original key, value, headers and timestamp to the topic and
partition it was consumed from; the stage processes it like any new record (after the last record
there, so fix the cause first: the producer, the registry, the topic's max.message.bytes). A record
that fails again is dead-lettered again. The poison topic keeps its entries (retention removes them).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkStage(stage); err != nil {
				return err
			}
			byOffset := cmd.Flags().Changed("offset")
			if n := btoi(all) + btoi(len(ids) > 0) + btoi(byOffset); n != 1 {
				return errors.New("give exactly one of --id, --offset (with --partition) or --all")
			}
			cfg, err := f.load()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var chosen []deadletter.Entry
			switch {
			case all:
				err = deadletter.Read(ctx, cfg, stage, func(e deadletter.Entry) error {
					chosen = append(chosen, e)
					return nil
				})
			case byOffset:
				var e deadletter.Entry
				if e, err = deadletter.At(ctx, cfg, stage, partition, offset); err == nil {
					chosen = append(chosen, e)
				}
			default:
				for _, id := range ids {
					p, o, perr := webhook.ParseDeadLetterID(id) // the same <partition>-<offset> ids
					if perr != nil {
						return hooksError(perr)
					}
					e, err := deadletter.At(ctx, cfg, stage, p, o)
					if err != nil {
						return err
					}
					chosen = append(chosen, e)
				}
			}
			if err != nil {
				return err
			}
			opts, err := kafkaconn.Opts(cfg.Kafka)
			if err != nil {
				return err
			}
			cl, err := kgo.NewClient(append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
			if err != nil {
				return err
			}
			defer cl.Close()
			n, err := deadletter.Redrive(ctx, cl, chosen...)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "redrove %d poison records of %s to their source topics\n", n, stage)
			return nil
		},
	}
	f.register(cmd)
	stageFlag(cmd, &stage, true)
	fl := cmd.Flags()
	fl.StringArrayVar(&ids, "id", nil, "poison record id <partition>-<offset>, as dlq list shows it (repeatable)")
	fl.Int32Var(&partition, "partition", 0, "partition of the poison topic, with --offset")
	fl.Int64Var(&offset, "offset", 0, "offset in the poison topic's partition")
	fl.BoolVar(&all, "all", false, "every record the stage's poison topic holds")
	return cmd
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func dlqSkip() *cobra.Command {
	var f configFlags
	var stage, topic, reason string
	var partition int32
	var offset int64
	cmd := &cobra.Command{
		Use:   "skip --stage S --topic T --partition P --offset N",
		Short: "Move a stage stopped on a poison record past it (the record is copied to the poison topic first)",
		Long: `skip is for a stage that on_poison: stop stopped: its error names the record and this command. It
copies the record to the stage's poison topic, then commits the offset after it for the stage's
consumer group, which must have no running member and must be at that record.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkStage(stage); err != nil {
				return err
			}
			cfg, err := f.load()
			if err != nil {
				return err
			}
			pos := deadletter.Position{Topic: topic, Partition: partition, Offset: offset}
			if err := deadletter.Skip(cmd.Context(), cfg, stage, pos, reason); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "skipped %s for %s (copied to %s); start the stage again\n", pos, cfg.StageGroup(stage), cfg.PoisonTopic(stage))
			return nil
		},
	}
	f.register(cmd)
	stageFlag(cmd, &stage, true)
	fl := cmd.Flags()
	fl.StringVar(&topic, "topic", "", "topic of the record the stage stopped at")
	fl.Int32Var(&partition, "partition", 0, "its partition")
	fl.Int64Var(&offset, "offset", 0, "its offset")
	fl.StringVar(&reason, "reason", "skipped with walhook dlq skip (on_poison: stop)", "reason recorded in the poison record's walhook-dlq-reason header")
	for _, n := range []string{"topic", "partition", "offset"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}
