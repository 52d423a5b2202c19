// Package clock is the one shape of an injected clock in rekey: an interface
// that tells the time, and the real clock that satisfies it.
package clock

import "time"

// Clock tells the time. Whatever reads the time takes one, so tests set it
// instead of sleeping; agent/apple, which imports nothing of rekey, declares
// the same one-method interface.
type Clock interface{ Now() time.Time }

// System is the real clock.
type System struct{}

var _ Clock = System{}

// Now returns time.Now().
func (System) Now() time.Time { return time.Now() }
