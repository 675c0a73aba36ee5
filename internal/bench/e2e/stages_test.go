package e2e

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/kafkaconn"
	"github.com/walhook/walhook/pipeline"
	"github.com/walhook/walhook/sinks/webhook"
)

// stages runs cdc, bubbleup and deliver in this process, built as cmd/walhook's cdcService,
// bubbleupService and deliverService build them (the compliance sink, which `walhook dev` also
// runs, is left out: it is not on the webhook path).
type stages struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errc   chan error // the first error of each stage that stopped by itself
	reg    *prometheus.Registry
}

func startStages(b *testing.B, cfg *config.Config, sinkOpts ...webhook.Option) *stages {
	log := zaptest.NewLogger(b, zaptest.Level(zap.WarnLevel))
	st := &stages{errc: make(chan error, 3), reg: prometheus.NewRegistry()}
	c, err := cdc.New(cfg, cdc.WithLogger(log.Named("cdc")), cdc.WithRegisterer(st.reg))
	if err != nil {
		b.Fatal(err)
	}
	opts, err := kafkaconn.Opts(cfg.Kafka)
	if err != nil {
		b.Fatal(err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		b.Fatal(err)
	}
	avroReg, err := kafkaconn.AvroRegistry(cfg, cl)
	if err != nil {
		b.Fatal(err)
	}
	bu, err := pipeline.New(cfg, pipeline.WithLogger(log.Named("bubbleup")), pipeline.WithRegisterer(st.reg), pipeline.WithRegistry(avroReg))
	if err != nil {
		b.Fatal(err)
	}
	sink, err := webhook.New(cfg, append([]webhook.Option{webhook.WithLogger(log.Named("deliver")), webhook.WithRegisterer(st.reg)}, sinkOpts...)...)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st.cancel = cancel
	for name, run := range map[string]func(context.Context) error{"cdc": c.Run, "bubbleup": bu.Run, "deliver": sink.Run} {
		st.wg.Go(func() {
			if err := run(ctx); err != nil && ctx.Err() == nil {
				st.errc <- fmt.Errorf("%s stopped: %w", name, err)
			}
		})
	}
	b.Cleanup(func() {
		st.stop()
		cl.Close()
	})
	return st
}

// stop cancels every stage and waits for all of them; idempotent.
func (st *stages) stop() {
	st.cancel()
	st.wg.Wait()
}

// sleep waits d, failing the benchmark at once if a stage stops by itself meanwhile.
func (st *stages) sleep(b *testing.B, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-st.errc:
		b.Fatal(err)
	case <-b.Context().Done():
		b.Fatal(errors.New("benchmark cancelled"))
	case <-t.C:
	}
}
