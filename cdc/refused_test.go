package cdc

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/walhook/walhook/internal/kafkatest"
)

// TestRefusedRecordStopsClearly: a row the change topic's max.message.bytes refuses stops the
// stage, after a pause (no tight crash loop), with an error naming the table, the LSN, the
// topic and the fix; the slot stays before that transaction and the transaction before it was
// confirmed, so nothing is lost.
func TestRefusedRecordStopsClearly(t *testing.T) {
	e := newEnv(t, "")
	topic := e.cfg.Kafka.ChangeTopic(e.cfg.Model.Roots[0])
	adm := kadm.NewClient(kafkatest.Client(t, e.kafk))
	const wait = 2 * time.Second
	r := e.start("refused", func(s *Stage) { s.refusedWait = wait })
	e.waitActive()
	// Lowered only now: at start cdc refuses a topic whose max.message.bytes is below
	// kafka.max_record_bytes, and below that size records are not chunked. An operator lowering
	// the limit under a running stage is how a record gets refused for good.
	kafkatest.SetTopicConfig(t, adm, topic, "max.message.bytes", "8192")
	e.exec(`INSERT INTO session.instance (id, status, tenant_id) VALUES (1, 'COMPLETED', 't1')`)
	e.exec(`INSERT INTO incident.instance (id, description, status, severity, start_time, session_instance_id, tenant_id)
		VALUES (1, 'small', 'TRIGGERED', 'LOW', now(), 1, 't1')`)
	before := e.currentLSN()
	kafkatest.Eventually(t, 30*time.Second, func() error {
		if got := e.confirmedFlush(); got < before {
			return fmt.Errorf("confirmed_flush_lsn %X, want at least %X", got, before)
		}
		return nil
	})
	e.exec(`INSERT INTO incident.instance (id, description, status, severity, start_time, session_instance_id, tenant_id)
		VALUES (2, $1, 'TRIGGERED', 'LOW', now(), 1, 't1')`, randomText(64<<10))
	big := e.currentLSN()
	start := time.Now()
	var err error
	select {
	case err = <-r.done:
	case <-time.After(90 * time.Second):
		t.Fatal("the stage did not stop on a record the broker refuses")
	}
	r.once.Do(func() {}) // already returned
	if took := time.Since(start); took < wait {
		t.Errorf("the stage returned %v after the refused record: a restart would loop tightly", took)
	}
	msg := fmt.Sprint(err)
	for _, want := range []string{"table incident.instance", "LSN", topic, "max.message.bytes", "MESSAGE_TOO_LARGE"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %q", msg, want)
		}
	}
	if got := e.confirmedFlush(); got >= big || got < before {
		t.Errorf("confirmed_flush_lsn %X: want at least %X (the small row) and below %X (the refused one)", got, before, big)
	}
}
