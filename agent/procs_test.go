package agent

import (
	"runtime"
	"testing"
)

// resetProcs gives the test process the runtime's default GOMAXPROCS and
// forgets SetProcs, now and when t ends.
func resetProcs(t *testing.T) int {
	reset := func() {
		extraProcs.Lock()
		extraProcs.fixed = 0
		extraProcs.Unlock()
		runtime.SetDefaultGOMAXPROCS()
	}
	reset()
	t.Cleanup(reset)
	return runtime.GOMAXPROCS(0)
}

func TestSetProcsAddsOneSlotThatBackgroundWorkKeeps(t *testing.T) {
	def := resetProcs(t)
	if n := SetProcs(); n != def+1 || runtime.GOMAXPROCS(0) != def+1 {
		t.Fatalf("SetProcs: %d, GOMAXPROCS %d; want %d (the default %d and one)", n, runtime.GOMAXPROCS(0), def+1, def)
	}
	if n := SetProcs(); n != def+1 || runtime.GOMAXPROCS(0) != def+1 {
		t.Fatalf("SetProcs again: %d, GOMAXPROCS %d; want %d unchanged", n, runtime.GOMAXPROCS(0), def+1)
	}
	var during int
	background(func() { during = runtime.GOMAXPROCS(0) })
	if after := runtime.GOMAXPROCS(0); during != def+2 || after != def+1 {
		t.Fatalf("GOMAXPROCS during background work %d, after %d; want %d, then %d again", during, after, def+2, def+1)
	}
}

func TestSetProcsDuringBackgroundWork(t *testing.T) {
	def := resetProcs(t)
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		background(func() {
			close(started)
			<-release
		})
	}()
	<-started
	if n := SetProcs(); n != def+1 || runtime.GOMAXPROCS(0) != def+2 {
		t.Errorf("SetProcs during background work: %d, GOMAXPROCS %d; want %d and %d", n, runtime.GOMAXPROCS(0), def+1, def+2)
	}
	close(release)
	<-done
	if after := runtime.GOMAXPROCS(0); after != def+1 {
		t.Fatalf("GOMAXPROCS after the background work %d, want SetProcs' %d", after, def+1)
	}
}

func TestSetProcsKeepsTheEnvironmentsNumber(t *testing.T) {
	resetProcs(t)
	t.Setenv("GOMAXPROCS", "3")
	runtime.GOMAXPROCS(3)
	if n := SetProcs(); n != 3 || runtime.GOMAXPROCS(0) != 3 {
		t.Fatalf("SetProcs with GOMAXPROCS=3 in the environment: %d, GOMAXPROCS %d; want 3", n, runtime.GOMAXPROCS(0))
	}
}
