package agent

import (
	"runtime"
	"testing"
)

func TestExtraSlotWhileActingOnAChangeAndSharedWithBackgroundWork(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	var during, nested int
	withExtraSlot(func() {
		during = runtime.GOMAXPROCS(0)
		background(func() { nested = runtime.GOMAXPROCS(0) })
	})
	if after := runtime.GOMAXPROCS(0); during != procs+1 || nested != procs+1 || after != procs {
		t.Fatalf("GOMAXPROCS %d while acting, %d with background work inside, %d after; want %d, %d, then %d again",
			during, nested, after, procs+1, procs+1, procs)
	}
}
