package obs

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// TestLoggerErrorsCarryNoStackTrace: an error line about bad input or a dead server is for an
// operator; a Go stack trace under it is noise in either format.
func TestLoggerErrorsCarryNoStackTrace(t *testing.T) {
	for _, format := range []string{"json", "console"} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr := os.Stderr
		os.Stderr = w
		log, err := NewLogger("info", format)
		os.Stderr = stderr
		if err != nil {
			t.Fatal(err)
		}
		log.Error("endpoint refused", zap.Error(errors.New("connection refused")))
		_ = log.Sync()
		_ = w.Close()
		out, _ := io.ReadAll(r)
		if !strings.Contains(string(out), "endpoint refused") {
			t.Fatalf("%s: the line was not written: %q", format, out)
		}
		if strings.Contains(string(out), "stacktrace") || strings.Contains(string(out), "log_test.go") && strings.Count(string(out), "\n") > 1 {
			t.Errorf("%s: error line with a stack trace:\n%s", format, out)
		}
	}
}
