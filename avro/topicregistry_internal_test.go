package avro

import (
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// TestTransientListError: a listing that failed because a broker did not answer (as while it
// fails over) is retried; one refused for a reason waiting cannot fix is not.
func TestTransientListError(t *testing.T) {
	dial := fmt.Errorf("unable to dial: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")})
	shards := func(errs ...error) error {
		se := &kadm.ShardErrors{Name: "ListOffsets"}
		for _, e := range errs {
			se.Errs = append(se.Errs, kadm.ShardError{Err: e})
		}
		return fmt.Errorf("avro: listing offsets of schema topic %q: %w", "walhook.schemas", se)
	}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"a broker that does not answer", shards(dial), true},
		{"a leader that moved", shards(kerr.NotLeaderForPartition), true},
		{"a request that timed out", shards(kerr.RequestTimedOut), true},
		{"one unreachable broker and one refusal", shards(dial, kerr.TopicAuthorizationFailed), false},
		{"not authorized", shards(kerr.TopicAuthorizationFailed), false},
		{"a plain error", errors.New("boom"), false},
	} {
		if got := transientListError(c.err); got != c.want {
			t.Errorf("%s: transientListError(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
