package embedkafka

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap"
)

// zapLogger routes kfake's log lines to zap. Only warnings and errors pass:
// kfake logs every request at info and debug, which would drown dev output.
type zapLogger struct{ l *zap.Logger }

func (z zapLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	switch level {
	case kfake.LogLevelError:
		z.l.Error(fmt.Sprintf(format, args...))
	case kfake.LogLevelWarn:
		if z.l.Core().Enabled(zap.WarnLevel) {
			z.l.Warn(fmt.Sprintf(format, args...))
		}
	}
}
