package kafkatest

import (
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// testLogger logs warnings and errors through t.Log until t's cleanups
// finish. zaptest would panic here: kfake.Cluster.Close does not wait for
// kfake's goroutines, and one may log after the test completed.
func testLogger(t testing.TB) *zap.Logger {
	w := &tWriter{t: t}
	// Registered before the stack's own cleanup, so it runs after it.
	t.Cleanup(w.stop)
	enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), zap.WarnLevel))
}

type tWriter struct {
	mu   sync.Mutex
	t    testing.TB // guarded by mu
	done bool       // guarded by mu
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
