package api

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rekeyd/rekey/platform/clock"
)

// Limiter bounds password guesses per import. Every attempt is reserved
// before the password is tried (so parallel guesses cannot all run before the
// first failure is counted), one attempt per import runs at a time, and the
// count survives a restart when Store is set. With Free 5 and Base 30s, the
// 5th counted failure locks the import for 30s, the 6th for 60s, and so on up
// to Max (on Clock). A success forgets the import; an attempt that ends without a
// verdict on the password (needs a choice, not found...) is given back.
type Limiter struct {
	Free  int
	Base  time.Duration
	Max   time.Duration
	Clock clock.Clock
	Store LimitStore // nil: counts are kept in memory only

	mu    sync.Mutex
	state map[string]*attempts
}

// LimitStore persists the limiter's counts (the agent passes its store).
type LimitStore interface {
	UnlockLimit(ctx context.Context, importID string) (failures int, until time.Time, err error)
	// SetUnlockLimit records the counts; failures 0 forgets the import.
	SetUnlockLimit(ctx context.Context, importID string, failures int, until time.Time) error
}

type attempts struct {
	failures int
	until    time.Time
	running  bool // an attempt holds a reservation
}

// NewLimiter returns a limiter with 5 free failures, a 30s first lockout and
// a 1h ceiling, on the real clock, in memory.
func NewLimiter() *Limiter {
	return &Limiter{Free: 5, Base: 30 * time.Second, Max: time.Hour, Clock: clock.System{}}
}

// Reservation is one attempt that may try a password. End it with exactly one
// of Failed, Succeeded or Cancel.
type Reservation struct {
	l    *Limiter
	id   string
	prev attempts
}

// Reserve counts an attempt on id as failed in advance and returns it, or
// returns wait > 0 when id is locked out or another attempt on it is
// running. err is set when the count cannot be read or recorded; the attempt
// is then refused.
func (l *Limiter) Reserve(ctx context.Context, id string) (r *Reservation, wait time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, err := l.load(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	if w := a.until.Sub(l.Clock.Now()); w > 0 {
		return nil, w, nil
	}
	if a.running {
		return nil, time.Second, nil
	}
	r = &Reservation{l: l, id: id, prev: *a}
	a.failures++
	a.until = l.lockUntil(a.failures)
	if err := l.save(ctx, id, a); err != nil {
		*a = r.prev
		return nil, 0, err
	}
	a.running = true
	return r, 0, nil
}

// Failed keeps the attempt counted: the password was wrong.
func (r *Reservation) Failed() { r.end(func(*attempts) bool { return false }) }

// Succeeded forgets the import's failures.
func (r *Reservation) Succeeded() {
	r.end(func(a *attempts) bool { *a = attempts{}; return true })
}

// Cancel gives the attempt back: the password was not judged.
func (r *Reservation) Cancel() {
	r.end(func(a *attempts) bool { a.failures, a.until = r.prev.failures, r.prev.until; return true })
}

func (r *Reservation) end(change func(*attempts) bool) {
	l := r.l
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.state[r.id]
	a.running = false
	if change(a) {
		// A failed write keeps the stricter count on disk: the next start
		// allows fewer attempts, never more.
		l.save(context.Background(), r.id, a)
	}
	if a.failures == 0 {
		delete(l.state, r.id)
	}
}

// Allow reports whether an attempt on id may start now, and if not how long
// until it may. It reserves nothing.
func (l *Limiter) Allow(id string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, err := l.load(context.Background(), id)
	if err != nil {
		return false, time.Second
	}
	if w := a.until.Sub(l.Clock.Now()); w > 0 {
		return false, w
	}
	if a.running {
		return false, time.Second
	}
	return true, 0
}

// lockUntil is the end of the lock-out after n counted failures.
func (l *Limiter) lockUntil(n int) time.Time {
	if n < l.Free {
		return time.Time{}
	}
	lock := l.Base
	for i := l.Free; i < n && lock < l.Max; i++ {
		lock *= 2
	}
	return l.Clock.Now().Add(min(lock, l.Max))
}

// load returns id's counts from memory, or from the store the first time.
func (l *Limiter) load(ctx context.Context, id string) (*attempts, error) {
	if a := l.state[id]; a != nil {
		return a, nil
	}
	a := &attempts{}
	if l.Store != nil {
		var err error
		if a.failures, a.until, err = l.Store.UnlockLimit(ctx, id); err != nil {
			return nil, fmt.Errorf("read unlock attempts: %w", err)
		}
	}
	if l.state == nil {
		l.state = make(map[string]*attempts)
	}
	l.state[id] = a
	return a, nil
}

func (l *Limiter) save(ctx context.Context, id string, a *attempts) error {
	if l.Store == nil {
		return nil
	}
	if err := l.Store.SetUnlockLimit(ctx, id, a.failures, a.until); err != nil {
		return fmt.Errorf("record unlock attempt: %w", err)
	}
	return nil
}
