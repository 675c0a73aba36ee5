// Package obs holds the process basics every walhook subcommand shares: the zap logger, the
// Prometheus registry, and the operational HTTP endpoint (/metrics, /healthz, /readyz).
//
// Stages never reach for globals: cmd/ builds a Registry and a logger here and hands them to each
// stage. obs must not import any stage package.
package obs
