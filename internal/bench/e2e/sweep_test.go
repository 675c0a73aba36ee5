package e2e

import (
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	flagSweep = flag.String("e2e.sweep", "1000,2000,5000,+",
		"BenchmarkCommitToWebhookSweep: the rates (tx/s) to run in order; a trailing + keeps raising the rate ×1.5 until a step breaks")
	flagStep       = flag.Duration("e2e.step", 10*time.Second, "BenchmarkCommitToWebhookSweep: each step's measured window")
	flagStepWarmup = flag.Duration("e2e.step-warmup", 3*time.Second, "BenchmarkCommitToWebhookSweep: paced writing before each step's window")
	flagSweepP99   = flag.Duration("e2e.sweep-p99", time.Second, "BenchmarkCommitToWebhookSweep: a step whose p99 exceeds this breaks the sweep")
	flagSweepMax   = flag.Int("e2e.sweep-max", 50000, "BenchmarkCommitToWebhookSweep: the highest rate a trailing + goes to")
	flagSweepConns = flag.Int("e2e.sweep-conns", 32, "BenchmarkCommitToWebhookSweep: writer connections (more than -e2e.conns, so that the writer is not what limits the higher rates)")
)

// sweepTargets are the p99 bars at given rates, printed beside the figures (not asserted).
var sweepTargets = map[int]time.Duration{1000: 50 * time.Millisecond, 5000: 100 * time.Millisecond}

// BenchmarkCommitToWebhookSweep runs BenchmarkCommitToWebhook's pipeline at rising rates, one
// step after another on the same stages (use -benchtime=1x; b.N is ignored). Each step writes at
// its rate through a warm-up and a window, drains, and checks that every transaction of its
// window was delivered exactly once with a valid signature. It prints, per step: achieved tx/s,
// commit-to-receipt p50/p99/max, the cores this process used, missing and duplicate deliveries,
// and which stage's backlog grew over the window. A step breaks the sweep when it achieves less
// than 90 % of its rate or its p99 exceeds -e2e.sweep-p99; the listed rates all run, a trailing +
// only continues while no step broke.
func BenchmarkCommitToWebhookSweep(b *testing.B) {
	rates, more, err := parseSweep(*flagSweep)
	if err != nil {
		b.Fatal(err)
	}
	e := startBench(b, *flagSweepConns)
	var results []result
	broke := false
	for i := 0; i < len(rates) || (more && !broke); i++ {
		if i == len(rates) {
			next := int(math.Round(float64(rates[i-1])*1.5/500) * 500)
			if next > *flagSweepMax {
				break
			}
			rates = append(rates, next)
		}
		r := e.measure(b, rates[i], *flagStepWarmup, *flagStep)
		report(b, r)
		results = append(results, r)
		if why := breaks(r); why != "" {
			fmt.Printf("  step %d tx/s breaks: %s\n", r.rate, why)
			broke = true
		}
		b.ReportMetric(achieved(r), fmt.Sprintf("tx/s@%d", r.rate))
		b.ReportMetric(float64(r.recv.p99.Microseconds())/1000, fmt.Sprintf("p99_ms@%d", r.rate))
	}
	printStageMetrics(e.st.reg)
	printSweep(results)
}

// parseSweep reads -e2e.sweep: rates in order, then an optional +.
func parseSweep(s string) (rates []int, more bool, err error) {
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "+" {
			more = true
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 || more {
			return nil, false, fmt.Errorf("-e2e.sweep %q: want rates in tx/s, comma-separated, optionally ending in + (e.g. 1000,2000,5000,+)", s)
		}
		rates = append(rates, n)
	}
	if len(rates) == 0 {
		return nil, false, fmt.Errorf("-e2e.sweep %q: no rate", s)
	}
	return rates, more, nil
}

func achieved(r result) float64 { return float64(r.committed) / r.window.Seconds() }

// breaks says why a step is past the pipeline's limit, or "".
func breaks(r result) string {
	var why []string
	if a := achieved(r); a < 0.9*float64(r.rate) {
		w := fmt.Sprintf("achieved %.0f tx/s < 90 %% of %d", a, r.rate)
		if r.behind > 0 {
			// The pacer found every connection busy: PostgreSQL did not commit faster.
			w += fmt.Sprintf(" (writer-bound: %d transactions dropped by the pacer, every connection busy)", r.behind)
		}
		why = append(why, w)
	}
	if r.recv.p99 > *flagSweepP99 {
		why = append(why, fmt.Sprintf("p99 %s > %v", ms(r.recv.p99), *flagSweepP99))
	}
	if r.missing > 0 || r.recv.dups > 0 {
		why = append(why, fmt.Sprintf("%d missing, %d duplicates", r.missing, r.recv.dups))
	}
	return strings.Join(why, "; ")
}

// printSweep prints the steps as one table.
func printSweep(rs []result) {
	fmt.Printf("CommitToWebhookSweep: %v windows after %v warm-up each, %d writer connections\n", *flagStep, *flagStepWarmup, *flagSweepConns)
	fmt.Printf("  %7s %9s %9s %9s %9s %6s %8s %5s %8s  %-40s %-16s %s\n",
		"target", "achieved", "p50", "p99", "max", "cores", "missing", "dups", "dropped", "backlog grew", "loadavg", "bar")
	for _, r := range rs {
		bar := ""
		if t, ok := sweepTargets[r.rate]; ok {
			met := "not met"
			if r.recv.p99 < t && r.missing == 0 && r.recv.dups == 0 && achieved(r) >= 0.9*float64(r.rate) {
				met = "met"
			}
			bar = fmt.Sprintf("p99 < %v: %s", t, met)
		}
		load := strings.Join(strings.Fields(r.load)[:min(3, len(strings.Fields(r.load)))], " ")
		fmt.Printf("  %7d %9.1f %9s %9s %9s %6.2f %8d %5d %8d  %-40s %-16s %s\n", r.rate, achieved(r),
			ms(r.recv.p50), ms(r.recv.p99), ms(r.recv.max), r.cpu.Seconds()/r.window.Seconds(),
			r.missing, r.recv.dups, r.behind, grewNames(r.lags, r.failed), load, bar)
	}
}
