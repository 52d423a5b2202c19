package api

import (
	"sync"
	"time"

	"github.com/rekeyd/rekey/platform/clock"
)

// Limiter counts wrong passwords per import and locks an import out for a
// doubling period once Free failures have been spent: with Free 5 and Base
// 30s, the 5th failure locks for 30s, the 6th for 60s, and so on up to Max.
// A success forgets the import. Clock is injectable for tests.
type Limiter struct {
	Free  int
	Base  time.Duration
	Max   time.Duration
	Clock clock.Clock

	mu    sync.Mutex
	state map[string]*attempts
}

type attempts struct {
	failures int
	until    time.Time
}

// NewLimiter returns a limiter with 5 free failures, a 30s first lockout and
// a 1h ceiling, on the real clock.
func NewLimiter() *Limiter {
	return &Limiter{Free: 5, Base: 30 * time.Second, Max: time.Hour, Clock: clock.System{}}
}

// Allow reports whether an attempt on id may go ahead, and if not how long
// until it may.
func (l *Limiter) Allow(id string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.state[id]
	if a == nil {
		return true, 0
	}
	if wait := a.until.Sub(l.Clock.Now()); wait > 0 {
		return false, wait
	}
	return true, 0
}

// Fail records a wrong password for id.
func (l *Limiter) Fail(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state == nil {
		l.state = make(map[string]*attempts)
	}
	a := l.state[id]
	if a == nil {
		a = &attempts{}
		l.state[id] = a
	}
	a.failures++
	if a.failures < l.Free {
		return
	}
	lock := l.Base
	for i := l.Free; i < a.failures && lock < l.Max; i++ {
		lock *= 2
	}
	lock = min(lock, l.Max)
	a.until = l.Clock.Now().Add(lock)
}

// Succeed forgets id's failures.
func (l *Limiter) Succeed(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.state, id)
}
