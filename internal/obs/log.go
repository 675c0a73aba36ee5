package obs

import (
	"fmt"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewLogger builds the process logger. format is "json" (production: one object per line, for log
// shippers) or "console" (walhook dev: for people).
func NewLogger(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error: %w", level, err)
	}
	var cfg zap.Config
	switch format {
	case "json", "":
		cfg = zap.NewProductionConfig()
		cfg.EncoderConfig.TimeKey = "time"
		cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
		cfg.EncoderConfig.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
	default:
		return nil, fmt.Errorf("log format %q: use json or console", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	// Sampling drops repeated lines under load; an operator debugging a lost event needs all of
	// them, so it stays off.
	cfg.Sampling = nil
	// An error line is about the input or a server (a refused endpoint, an unreachable broker)
	// and says so; a Go stack trace under it is noise. Only a bug (DPanic and above) gets one.
	cfg.DisableStacktrace = true
	return cfg.Build(zap.AddStacktrace(zapcore.DPanicLevel))
}
