package source

import (
	"time"

	"github.com/rekeyd/rekey/platform/clock"
)

// Clock is rekey's clock (platform/clock) plus the timers the watcher
// waits on, so that tests drive time by hand instead of sleeping. The zero
// Config uses the real clock.
type Clock interface {
	clock.Clock
	NewTimer(d time.Duration) Timer
	NewTicker(d time.Duration) Ticker
}

// Timer is the part of *time.Timer the watcher uses.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// Ticker is the part of *time.Ticker the watcher uses.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

type realClock struct{ clock.System }

var _ Clock = realClock{}

func (realClock) NewTimer(d time.Duration) Timer   { return realTimer{time.NewTimer(d)} }
func (realClock) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }

type realTicker struct{ t *time.Ticker }

func (t realTicker) C() <-chan time.Time { return t.t.C }
func (t realTicker) Stop()               { t.t.Stop() }

// timerC is the channel of a timer that may not be armed (nil): a nil
// channel blocks for ever in a select, which is what an unarmed timer means.
func timerC(t Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C()
}
