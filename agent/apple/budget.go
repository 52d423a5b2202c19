package apple

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rates of the adaptive budget, in requests a minute. Apple publishes no
// limits; clients used against live tenants measured about 20 GET requests
// a minute before 429s (docs/apple.md).
const (
	DefaultStartRate = 20.0  // where an adaptive budget starts
	DefaultMaxRate   = 600.0 // the most an adaptive budget rises to
	MinRate          = 1.0   // the least any budget falls to
	decreaseFactor   = 0.9   // applied once per 429 episode
	increaseFactor   = 1.02  // applied after a minute's worth of successes
	maxWorkers       = 16
)

// Budget is one tenant's allowance of requests to Apple: a token bucket
// shared by every request of that tenant's syncs (device list, coverage,
// token). It starts conservative, lowers its rate on every 429 episode and
// stops every request until the Retry-After has passed, and rises slowly
// while requests succeed. A Budget is safe for concurrent use; its clock is
// the one of the Client that spends from it.
type Budget struct {
	mu          sync.Mutex
	lim         *rate.Limiter
	perMinute   float64
	ceiling     float64
	pausedUntil time.Time
	calmAfter   time.Time // 429s before this belong to the episode already counted
	successes   int
	throttled   int
}

// NewBudget returns a budget. perMinute > 0 is an administrator's fixed
// ceiling (Settings.RequestsPerMinute): the budget starts there and never
// goes above it. perMinute <= 0 makes it adaptive: it starts at
// DefaultStartRate and rises to at most DefaultMaxRate.
func NewBudget(perMinute float64) *Budget {
	if perMinute > 0 {
		return newBudget(perMinute, perMinute)
	}
	return newBudget(DefaultStartRate, DefaultMaxRate)
}

// NewBudgetRange returns an adaptive budget that starts at start and rises
// to at most ceiling requests a minute (for a scaled fake in benchmarks).
func NewBudgetRange(start, ceiling float64) *Budget {
	return newBudget(math.Min(start, ceiling), ceiling)
}

func newBudget(start, ceiling float64) *Budget {
	start = math.Max(start, MinRate)
	return &Budget{lim: rate.NewLimiter(perSecond(start), 1), perMinute: start, ceiling: math.Max(ceiling, MinRate)}
}

func perSecond(perMinute float64) rate.Limit { return rate.Limit(perMinute / 60) }

// Rate is the current rate in requests a minute.
func (b *Budget) Rate() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.perMinute
}

// Throttled is how many 429s the budget has seen.
func (b *Budget) Throttled() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.throttled
}

// workers is how many requests may be in flight: enough to keep the rate
// with ten seconds of latency each, at least one (at Apple's 20 a minute,
// four waiting their turn; at 6 a minute or less, one).
func (b *Budget) workers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return min(maxWorkers, max(1, int(math.Ceil(b.perMinute/60*10))))
}

// reserve takes a request slot at now. It returns how long to wait before
// sending; when taken is false the budget is paused and the caller must
// ask again after the wait.
func (b *Budget) reserve(now time.Time) (wait time.Duration, taken bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Before(b.pausedUntil) {
		return b.pausedUntil.Sub(now), false
	}
	r := b.lim.ReserveN(now, 1)
	return r.DelayFrom(now), true
}

// throttle records a 429 at now asking for a wait of retryAfter: nobody
// sends until it has passed, and the first 429 of an episode lowers the rate.
func (b *Budget) throttle(now time.Time, retryAfter time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.throttled++
	b.successes = 0
	if until := now.Add(retryAfter); until.After(b.pausedUntil) {
		b.pausedUntil = until
	}
	if now.Before(b.calmAfter) {
		return
	}
	b.calmAfter = b.pausedUntil
	b.setRate(now, b.perMinute*decreaseFactor)
}

// succeeded records a request Apple answered; after a minute's worth of
// successes in a row the rate rises a little, up to the ceiling.
func (b *Budget) succeeded(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.successes++
	if float64(b.successes) >= b.perMinute && b.perMinute < b.ceiling {
		b.successes = 0
		b.setRate(now, b.perMinute*increaseFactor)
	}
}

func (b *Budget) setRate(now time.Time, perMinute float64) {
	b.perMinute = math.Min(b.ceiling, math.Max(MinRate, perMinute))
	b.lim.SetLimitAt(now, perSecond(b.perMinute))
}
