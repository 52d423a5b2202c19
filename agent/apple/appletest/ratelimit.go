package appletest

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"time"
)

// ScaledClock is a clock that runs Scale times faster than the real one
// from its start: a fake and a client that share it behave as at Apple's real
// rates (20 requests a minute, Retry-After in whole seconds) while a
// benchmark takes seconds. Give Now to Server.SetClock and to the client's
// Now, and Sleep to the client's Sleep.
type ScaledClock struct {
	start, real0 time.Time
	scale        float64
}

// NewScaledClock starts a clock at start running scale times real time.
func NewScaledClock(start time.Time, scale float64) *ScaledClock {
	return ScaledClockFrom(start, time.Now(), scale)
}

// ScaledClockFrom is the clock that read start at the real time real0: a
// child process given both shares its parent's scaled clock.
func ScaledClockFrom(start, real0 time.Time, scale float64) *ScaledClock {
	return &ScaledClock{start: start, real0: real0, scale: scale}
}

// Now is the scaled time.
func (c *ScaledClock) Now() time.Time {
	return c.start.Add(time.Duration(float64(time.Since(c.real0)) * c.scale))
}

// Real0 is the real time at which the clock read its start.
func (c *ScaledClock) Real0() time.Time { return c.real0 }

// Sleep waits d of scaled time (d/Scale of real time) or until ctx ends.
func (c *ScaledClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(time.Duration(float64(d) / c.scale))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// bucket is the fake's token bucket: perMinute tokens a minute up to burst,
// on the server's clock.
type bucket struct {
	perMinute float64
	burst     float64
	tokens    float64
	last      time.Time
}

// take spends a token at now, or says how long until one is there.
func (b *bucket) take(now time.Time) (ok bool, wait time.Duration) {
	if b.last.IsZero() {
		b.tokens, b.last = b.burst, now
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = math.Min(b.burst, b.tokens+el.Minutes()*b.perMinute)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / b.perMinute * float64(time.Minute))
}

// SetRateLimit makes the API (device list and coverage, not the token
// endpoint) allow perMinute requests a minute with bursts of up to burst,
// as measured against Apple; more are answered 429 with Retry-After in
// whole seconds. perMinute <= 0 turns the limit off.
func (s *Server) SetRateLimit(perMinute float64, burst int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if perMinute <= 0 {
		s.limit = nil
		return
	}
	s.limit = &bucket{perMinute: perMinute, burst: float64(max(burst, 1))}
}

// limited answers 429 when the rate limit is exceeded.
func (s *Server) limited(w http.ResponseWriter) bool {
	s.mu.Lock()
	s.stats.APIRequests++
	if s.limit == nil {
		s.mu.Unlock()
		return false
	}
	ok, wait := s.limit.take(s.now())
	if ok {
		s.mu.Unlock()
		return false
	}
	s.stats.Throttled++
	s.mu.Unlock()
	secs := max(int64(math.Ceil(wait.Seconds())), 1)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	apiError(w, http.StatusTooManyRequests, "RATE_LIMIT_EXCEEDED", "The request rate limit has been reached.")
	return true
}
