package kafkaconn

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"
)

// SessionError marks the error that ended a transactional consumer-group session: Begin, the
// pre-commit flush or End failed. franz-go leaves such a session unusable (no End error is
// retryable), but a new session usually succeeds: the broker leading the transaction
// coordinator failed over, the producer's epoch was fenced, a request timed out while a broker
// was paused. RunSessions replaces the session in process instead of exiting, so a broker
// failover does not become a crash loop (and Kubernetes' crash-loop backoff).
type SessionError struct{ Err error }

func (e *SessionError) Error() string { return e.Err.Error() }
func (e *SessionError) Unwrap() error { return e.Err }

// Session backoff: the first replacement waits sessionBackoffMin, each quick failure doubles it
// up to sessionBackoffMax, and a session that ran for sessionHealthy resets it.
const (
	sessionBackoffMin = 500 * time.Millisecond
	sessionBackoffMax = 30 * time.Second
	sessionHealthy    = time.Minute
)

// RunSessions runs session until ctx ends (then it returns nil) or session returns an error
// that is not a *SessionError (returned as is). After a *SessionError it logs it, calls
// onRestart, waits and runs a new session.
func RunSessions(ctx context.Context, log *zap.Logger, onRestart func(error), session func(context.Context) error) error {
	backoff := sessionBackoffMin
	for {
		started := time.Now()
		err := session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var se *SessionError
		if !errors.As(err, &se) {
			return err
		}
		if time.Since(started) >= sessionHealthy {
			backoff = sessionBackoffMin
		}
		log.Warn("Kafka transaction failed; starting a new group session (its input is consumed again from the committed offsets)",
			zap.Error(err), zap.Duration("retry_in", backoff))
		if onRestart != nil {
			onRestart(err)
		}
		tm := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			tm.Stop()
			return nil
		case <-tm.C:
		}
		backoff = min(2*backoff, sessionBackoffMax)
	}
}
