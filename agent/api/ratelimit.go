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
	loaded   bool // the counts were read from Store
	running  bool // an attempt holds the import: it alone reads, changes and saves the counts
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
// is then refused. The limiter's mutex is never held while the store is read
// or written: the import is marked running first, which keeps every other
// attempt on it out until this one ends.
func (l *Limiter) Reserve(ctx context.Context, id string) (r *Reservation, wait time.Duration, err error) {
	a, ok := l.claim(id)
	if !ok {
		return nil, time.Second, nil
	}
	if err := l.load(ctx, id, a); err != nil {
		l.release(id, a)
		return nil, 0, err
	}
	l.mu.Lock()
	if w := a.until.Sub(l.Clock.Now()); w > 0 {
		l.mu.Unlock()
		l.release(id, a)
		return nil, w, nil
	}
	r = &Reservation{l: l, id: id, prev: *a}
	a.failures++
	a.until = l.lockUntil(a.failures)
	counted := *a
	l.mu.Unlock()
	if err := l.save(ctx, id, counted); err != nil {
		l.mu.Lock()
		a.failures, a.until = r.prev.failures, r.prev.until
		l.mu.Unlock()
		l.release(id, a)
		return nil, 0, err
	}
	return r, 0, nil
}

// claim marks id running and returns its counts, or ok false when another
// attempt on id is running.
func (l *Limiter) claim(id string) (a *attempts, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state == nil {
		l.state = make(map[string]*attempts)
	}
	a = l.state[id]
	if a == nil {
		a = &attempts{}
		l.state[id] = a
	}
	if a.running {
		return nil, false
	}
	a.running = true
	return a, true
}

// release ends id's running mark, forgetting an import with nothing counted.
func (l *Limiter) release(id string, a *attempts) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a.running = false
	if a.failures == 0 {
		delete(l.state, id)
	}
}

// Failed keeps the attempt counted: the password was wrong.
func (r *Reservation) Failed() { r.end(func(*attempts) bool { return false }) }

// Succeeded forgets the import's failures.
func (r *Reservation) Succeeded() {
	r.end(func(a *attempts) bool { a.failures, a.until = 0, time.Time{}; return true })
}

// Cancel gives the attempt back: the password was not judged.
func (r *Reservation) Cancel() {
	r.end(func(a *attempts) bool { a.failures, a.until = r.prev.failures, r.prev.until; return true })
}

// end applies change and saves the counts if it asks to, the import still
// marked running so that no other attempt starts before the save is done.
func (r *Reservation) end(change func(*attempts) bool) {
	l := r.l
	l.mu.Lock()
	a := l.state[r.id]
	save := change(a)
	counts := *a
	l.mu.Unlock()
	if save {
		// A failed write keeps the stricter count on disk: the next start
		// allows fewer attempts, never more.
		l.save(context.Background(), r.id, counts)
	}
	l.release(r.id, a)
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

// load reads id's counts from the store the first time. The caller holds id
// running, so no other attempt touches a meanwhile.
func (l *Limiter) load(ctx context.Context, id string, a *attempts) error {
	l.mu.Lock()
	loaded := a.loaded
	l.mu.Unlock()
	if loaded || l.Store == nil {
		return nil
	}
	failures, until, err := l.Store.UnlockLimit(ctx, id)
	if err != nil {
		return fmt.Errorf("read unlock attempts: %w", err)
	}
	l.mu.Lock()
	a.failures, a.until, a.loaded = failures, until, true
	l.mu.Unlock()
	return nil
}

func (l *Limiter) save(ctx context.Context, id string, a attempts) error {
	if l.Store == nil {
		return nil
	}
	if err := l.Store.SetUnlockLimit(ctx, id, a.failures, a.until); err != nil {
		return fmt.Errorf("record unlock attempt: %w", err)
	}
	return nil
}
