package api

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is a token bucket per key (and per client address for requests without a valid
// key), so one caller cannot starve the others or the database.
type limiter struct {
	rate  rate.Limit
	burst int
	mu    sync.Mutex
	per   map[string]*entry // guarded by mu
}

type entry struct {
	l    *rate.Limiter
	seen time.Time
}

// limiterIdle is how long an unused bucket is kept.
const limiterIdle = 10 * time.Minute

func newLimiter(perSecond float64, burst int) *limiter {
	return &limiter{rate: rate.Limit(perSecond), burst: burst, per: map[string]*entry{}}
}

// allow takes a token for who; when none is left it returns the seconds to wait.
func (l *limiter) allow(who string, now time.Time) (ok bool, retryAfter int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.per[who]
	if e == nil {
		if len(l.per) > 10000 {
			for k, v := range l.per {
				if now.Sub(v.seen) > limiterIdle {
					delete(l.per, k)
				}
			}
		}
		e = &entry{l: rate.NewLimiter(l.rate, l.burst)}
		l.per[who] = e
	}
	e.seen = now
	r := e.l.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, int(math.Ceil(d.Seconds()))
	}
	return true, 0
}
