package e2e

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/kafkaconn"
)

// lagProbe reads each stage's backlog from outside the stages: the replication slot's
// unconfirmed WAL (cdc), the bubble-up group's lag on the change topic and the webhook group's
// lag on the snapshot topic (committed offsets against end offsets).
type lagProbe struct {
	cfg  *config.Config
	conn *pgx.Conn
	cl   *kgo.Client
	adm  *kadm.Client
}

func startLagProbe(ctx context.Context, cfg *config.Config) (*lagProbe, error) {
	conn, err := pgx.Connect(ctx, cfg.Postgres.URL)
	if err != nil {
		return nil, fmt.Errorf("lag probe: %w", err)
	}
	opts, err := kafkaconn.Opts(cfg.Kafka)
	if err != nil {
		_ = conn.Close(ctx)
		return nil, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		_ = conn.Close(ctx)
		return nil, err
	}
	return &lagProbe{cfg: cfg, conn: conn, cl: cl, adm: kadm.NewClient(cl)}, nil
}

func (p *lagProbe) close() {
	p.cl.Close()
	_ = p.conn.Close(context.Background())
}

// lagSample is one reading. *End are the totals produced so far (WAL bytes, topic records):
// two samples give each stage's input rate, which turns a backlog into seconds of input.
type lagSample struct {
	at               time.Time
	walEnd, slotLag  int64 // bytes
	changeEnd, buLag int64 // records of the change topic; bubbleup group's lag on it
	snapEnd, whLag   int64 // records of the snapshot topic; webhook group's lag on it
	err              error // the first read that failed; the sample is then partial
}

func (p *lagProbe) sample(ctx context.Context) lagSample {
	s := lagSample{at: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := p.conn.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint,
		coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::bigint
		FROM pg_replication_slots WHERE slot_name = $1`, p.cfg.Postgres.Slot).Scan(&s.walEnd, &s.slotLag)
	if err != nil {
		s.err = fmt.Errorf("slot %s: %w", p.cfg.Postgres.Slot, err)
	}
	root := p.cfg.Model.Roots[0]
	lags, err := p.adm.Lag(ctx, p.cfg.BubbleUpGroup(), p.cfg.WebhookGroup())
	if err != nil && s.err == nil {
		s.err = fmt.Errorf("group lag: %w", err)
	}
	for _, g := range []struct {
		group, topic string
		end, lag     *int64
	}{
		{p.cfg.BubbleUpGroup(), p.cfg.Kafka.ChangeTopic(root), &s.changeEnd, &s.buLag},
		{p.cfg.WebhookGroup(), p.cfg.Kafka.SnapshotTopic(root), &s.snapEnd, &s.whLag},
	} {
		l, ok := lags[g.group]
		if !ok || l.Error() != nil {
			if s.err == nil {
				s.err = fmt.Errorf("group %s: %v", g.group, l.Error())
			}
			continue
		}
		for _, ml := range l.Lag[g.topic] {
			*g.end += ml.End.Offset
			*g.lag += max(ml.Lag, 0)
		}
	}
	return s
}

// stageLag is one stage's backlog at a step's start and end, in its own unit and in seconds of
// its input at the window's input rate.
type stageLag struct {
	name, unit       string
	start, end       int64
	startSec, endSec float64
	grew             bool
}

// A backlog counts as growing when it grew over the window by more than lagGrowthFloor seconds
// of input and lagGrowthShare of the window: less is the batching and periodic offset commits
// of the stages, which a reading at an instant catches at any point of their cycle.
const (
	lagGrowthFloor = 0.5
	lagGrowthShare = 0.05
)

// stageLags compares two samples taken at the start and the end of a window.
func stageLags(a, z lagSample) []stageLag {
	secs := z.at.Sub(a.at).Seconds()
	var out []stageLag
	for _, l := range []struct {
		name, unit             string
		endA, endZ, start, end int64
	}{
		{"cdc (slot)", "B", a.walEnd, z.walEnd, a.slotLag, z.slotLag},
		{"bubbleup (change topic)", "rec", a.changeEnd, z.changeEnd, a.buLag, z.buLag},
		{"deliver (snapshot topic)", "rec", a.snapEnd, z.snapEnd, a.whLag, z.whLag},
	} {
		rate := float64(l.endZ-l.endA) / secs // input per second
		s := stageLag{name: l.name, unit: l.unit, start: l.start, end: l.end}
		if rate > 0 {
			s.startSec, s.endSec = float64(l.start)/rate, float64(l.end)/rate
		}
		s.grew = s.endSec-s.startSec > max(lagGrowthFloor, lagGrowthShare*secs)
		out = append(out, s)
	}
	return out
}

// grewNames names the stages whose backlog grew, or "none"; failed are the sink's failed
// attempts in the window, whose deliveries wait in the retry topics.
func grewNames(ls []stageLag, failed map[string]float64) string {
	out := ""
	var retried float64
	for _, n := range failed {
		retried += n
	}
	if retried > 0 {
		out = fmt.Sprintf("deliver (%.0f to retry topics)", retried)
	}
	for _, l := range ls {
		if l.grew {
			if out != "" {
				out += ", "
			}
			out += l.name
		}
	}
	if out == "" {
		return "none"
	}
	return out
}

// printLags prints each stage's backlog at the window's start and end.
func printLags(r result) {
	for _, l := range r.lags {
		fmt.Printf("  lag %-26s %9d → %9d %-3s (%.2fs → %.2fs of input)%s\n", l.name, l.start, l.end, l.unit,
			l.startSec, l.endSec, map[bool]string{true: "  GREW", false: ""}[l.grew])
	}
	for outcome, n := range r.failed {
		if n > 0 {
			fmt.Printf("  deliver: %.0f attempts %s in the window (deferred through the retry topics: a timeout or a full endpoint queue)\n", n, outcome)
		}
	}
	if r.lagErr != nil {
		fmt.Printf("  lag readings incomplete: %v\n", r.lagErr)
	}
}
