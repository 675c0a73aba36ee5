package cdc

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/walhook/walhook/internal/apachekafka"
	"github.com/walhook/walhook/internal/kafkatest"
)

// The slot's confirmed_flush_lsn moves only once Kafka has acknowledged the records: on kfake
// every produce request is held at the broker; on Apache Kafka (WALHOOK_TEST_KAFKA=apache) the
// test's own broker is paused with SIGSTOP.
func TestConfirmedOnlyAfterKafkaAck(t *testing.T) {
	var e *env
	var hold, release func()
	if strings.HasPrefix(os.Getenv(kafkatest.EnvKafka), "apache") {
		c := kafkatest.StartApache(t, apachekafka.Options{})
		e = newEnvOn(t, "", kafkatest.EnvOf(t, c))
		node := c.Node(1)
		hold = func() {
			if err := node.Pause(); err != nil {
				t.Fatal(err)
			}
		}
		release = func() {
			if err := node.Resume(); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		e = newEnv(t, "")
		cluster := e.kafk.RequireCluster(t)
		var held atomic.Bool
		released := make(chan struct{})
		hold = func() {
			held.Store(true)
			cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
				cluster.KeepControl()
				if held.Load() {
					cluster.SleepControl(func() { <-released })
				}
				return nil, nil, false
			})
		}
		release = func() {
			held.Store(false)
			close(released)
		}
	}
	r := e.start("a")
	e.waitActive()
	e.exec(`INSERT INTO session.instance (id, status, tenant_id) VALUES (1, 'COMPLETED', 't1')`)
	kafkatest.Eventually(t, 30*time.Second, func() error {
		if c, cur := e.confirmedFlush(), e.currentLSN(); c < cur {
			return fmt.Errorf("confirmed %X < current %X", c, cur)
		}
		return nil
	})

	hold()
	before := e.confirmedFlush()
	e.exec(`INSERT INTO session.instance (id, status, tenant_id) VALUES (2, 'COMPLETED', 't1')`)
	target := e.currentLSN()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if c := e.confirmedFlush(); c >= target {
			release()
			t.Fatalf("confirmed_flush_lsn moved to %X (target %X, before %X) while Kafka held the records", c, target, before)
		}
		time.Sleep(50 * time.Millisecond)
	}
	release()
	kafkatest.Eventually(t, 30*time.Second, func() error {
		if c := e.confirmedFlush(); c < target {
			return fmt.Errorf("confirmed %X < %X", c, target)
		}
		return nil
	})
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

// The slot advances with heartbeats while only an unpublished table is written.
func TestIdleSlotAdvances(t *testing.T) {
	e := newEnv(t, "")
	e.exec(`CREATE TABLE public.busy (id serial PRIMARY KEY, v text)`)
	r := e.start("a")
	e.waitActive()
	for i := 0; i < 20; i++ {
		e.exec(`INSERT INTO public.busy (v) SELECT md5(g::text) FROM generate_series(1, 500) g`)
	}
	target := e.currentLSN()
	kafkatest.Eventually(t, 30*time.Second, func() error {
		if c := e.confirmedFlush(); c < target {
			return fmt.Errorf("confirmed %X < %X", c, target)
		}
		return nil
	})
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}
