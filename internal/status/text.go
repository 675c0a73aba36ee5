package status

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// WriteText prints r as one screen for a person. What could not be read shows as "unknown"
// with the reason beside it, never as a zero that would look healthy.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "walhook status at %s\n\n", r.CheckedAt.Format(time.RFC3339))
	if s := r.Slot; s != nil {
		switch {
		case s.Unknown != "":
			fmt.Fprintf(tw, "slot %s: unknown (%s)\n", s.Name, s.Unknown)
		case !r.slotRead:
			fmt.Fprintf(tw, "slot %s: unknown (PostgreSQL not read)\n", s.Name)
		case !s.Exists:
			fmt.Fprintf(tw, "slot %s: DOES NOT EXIST\n", s.Name)
		default:
			state := "inactive (no cdc connected)"
			if s.Active {
				state = "active"
			}
			lagTime := "lag time unknown"
			if s.LagSeconds != nil {
				lagTime = fmt.Sprintf("%s behind", (time.Duration(*s.LagSeconds * float64(time.Second))).Round(time.Millisecond))
			}
			fmt.Fprintf(tw, "slot %s: %s, confirmed %s, lag %s (%d bytes), %s, wal_status %s\n",
				s.Name, state, s.ConfirmedFlushLSN, bytesIEC(s.LagBytes), s.LagBytes, lagTime, s.WALStatus)
		}
	}
	fmt.Fprintln(tw, "\nGROUP\tSTAGE\tSTATE\tTOPIC\tPARTITIONS\tLAG")
	for _, g := range r.Groups {
		if g.Unknown != "" {
			fmt.Fprintf(tw, "%s\t%s\t%s\t\t\tunknown (%s)\n", g.Group, g.Stage, g.State, g.Unknown)
			continue
		}
		for _, t := range g.Topics {
			parts := fmt.Sprint(t.Partitions)
			if t.Missing {
				parts = "missing"
			}
			lag := fmt.Sprint(t.Lag)
			if t.Approximate {
				lag = "≤" + lag
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", g.Group, g.Stage, g.State, t.Topic, parts, lag)
		}
	}
	if d := r.DeadLetters; d.Unknown != "" {
		fmt.Fprintf(tw, "\ndead letters: unknown (%s)\n", d.Unknown)
		fmt.Fprintf(tw, "retry backlog: unknown (%s)\n", d.Unknown)
	} else {
		fmt.Fprintf(tw, "\ndead letters: %d in %s\n", d.Records, d.Topic)
		fmt.Fprint(tw, "retry backlog:")
		for _, t := range r.RetryBacklog {
			fmt.Fprintf(tw, " %s=%d", t.Topic, t.Lag)
		}
		fmt.Fprintln(tw)
	}
	switch x := r.InexactReferences; {
	case x.Unknown != "":
		fmt.Fprintf(tw, "inexact references: unknown (%s)\n", x.Unknown)
	case x.Records > 0:
		fmt.Fprintf(tw, "inexact references: %d log positions in %s (snapshots beyond bubbleup.reference_history showed a newer reference version; raise it, see docs/configuration.md)\n",
			x.Records, x.Topic)
	default:
		fmt.Fprintf(tw, "inexact references: none (every snapshot showed its references as of its transaction)\n")
	}
	for _, p := range r.PoisonRecords {
		switch {
		case p.Unknown != "":
			fmt.Fprintf(tw, "poison records of %s: unknown (%s)\n", p.Stage, p.Unknown)
		case p.Records > 0:
			n := fmt.Sprint(p.Records)
			if p.Approximate {
				n = "≤" + n
			}
			fmt.Fprintf(tw, "poison records of %s: %s in %s (records the stage could not process; walhook dlq list --stage %s)\n", p.Stage, n, p.Topic, p.Stage)
		default:
			fmt.Fprintf(tw, "poison records of %s: none\n", p.Stage)
		}
	}
	switch u := r.OldestUndelivered; {
	case u != nil:
		fmt.Fprintf(tw, "oldest undelivered: %s[%d]@%d from %s (%s ago)\n", u.Topic, u.Partition, u.Offset,
			u.Timestamp.Format(time.RFC3339), time.Duration(u.AgeSeconds*float64(time.Second)).Round(time.Second))
	case r.OldestUndeliveredUnknown != "":
		fmt.Fprintf(tw, "oldest undelivered: unknown (%s)\n", r.OldestUndeliveredUnknown)
	default:
		fmt.Fprintln(tw, "oldest undelivered: none")
	}
	if r.DisabledSubscriptionsUnknown != "" {
		fmt.Fprintf(tw, "\ndisabled subscriptions: unknown (%s)\n", r.DisabledSubscriptionsUnknown)
	} else {
		fmt.Fprintf(tw, "\ndisabled subscriptions: %d\n", len(r.DisabledSubscriptions))
	}
	if len(r.DisabledSubscriptions) > 0 {
		fmt.Fprintln(tw, "UUID\tTENANT\tEVENT\tURL\tREASON\tDISABLED AT")
		for _, d := range r.DisabledSubscriptions {
			at := ""
			if d.DisabledAt != nil {
				at = d.DisabledAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.UUID, d.Tenant, d.EventType, d.URL, d.Reason, at)
		}
	}
	for _, e := range r.Errors {
		fmt.Fprintf(tw, "\nERROR: %s", e)
	}
	for _, v := range r.Violations {
		fmt.Fprintf(tw, "\nTHRESHOLD: %s", v)
	}
	if len(r.Errors)+len(r.Violations) > 0 {
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
