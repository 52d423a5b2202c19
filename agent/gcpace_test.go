package agent

import (
	"runtime"
	"runtime/metrics"
	"slices"
	"testing"
	"time"
)

func TestGCPercentGivesAFixedHeadroomOnlyWhenBusy(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		base uint64
		busy bool
		want int
	}{
		{2 * mib, false, 100},
		{8 * mib, true, 400},   // the next collection after 32 MiB more
		{16 * mib, true, 200},  // the same headroom over a larger heap
		{2 * mib, true, 800},   // under Go's least goal (4 MiB × GOGC/100): at 32 MiB
		{0, true, 800},         // the same
		{32 * mib, true, 100},  // a heap as large as the headroom: the default
		{256 * mib, true, 100}, // a key derivation's: never below the default
	} {
		if got := gcPercent(c.base, 32*mib, c.busy); got != c.want {
			t.Errorf("gcPercent(%d, 32 MiB, busy %v) = %d, want %d", c.base, c.busy, got, c.want)
		}
	}
}

func TestGCPacerFollowsTheAllocationRateBetweenCollections(t *testing.T) {
	const mib = 1 << 20
	now := time.Unix(1_700_000_000, 0)
	var base, allocated uint64 = 2 * mib, 0
	var set []int
	p := &gcPacer{headroom: 32 * mib, busyRate: 8 * mib,
		now:     func() time.Time { return now },
		read:    func() (uint64, uint64) { return base, allocated },
		set:     func(n int) int { set = append(set, n); return 0 },
		release: func() { set = append(set, -1) }} // -1: the heap returned

	p.cycle() // the first collection: no rate yet
	now, allocated = now.Add(100*time.Millisecond), allocated+6*mib
	p.cycle() // 60 MiB a second: busy
	now, allocated = now.Add(time.Second), allocated+40*mib
	p.cycle() // 40 MiB a second: still busy
	now, allocated = now.Add(2*time.Minute), allocated+mib
	p.cycle() // the forced collection of an idle process: back to the default, the heap returned
	now, allocated = now.Add(5*time.Millisecond), allocated+mib/2
	p.cycle() // the collection that returned it, soon after: no rate
	now, allocated = now.Add(time.Second), allocated+8*mib-1
	p.cycle() // just under the busy rate: nothing to return
	now, allocated = now.Add(time.Second), allocated+8*mib
	p.cycle() // at the busy rate
	now, allocated, base = now.Add(100*time.Millisecond), allocated+6*mib, 40*mib
	p.cycle() // still busy, the heap grown past the headroom: the default, nothing returned mid-load
	now, allocated, base = now.Add(100*time.Millisecond), allocated+6*mib, 2*mib
	p.cycle() // busy on a small heap again
	now, allocated = now.Add(2*time.Minute), allocated+mib
	p.cycle() // idle: back to the default, the heap returned

	want := []int{100, 800, 800, 100, -1, 100, 100, 800, 100, 800, 100, -1}
	if !slices.Equal(set, want) {
		t.Fatalf("GOGC set %v, want %v", set, want)
	}
}

// TestPaceGCRaisesTheRuntimesGOGCUnderAllocation runs the pacer paceGC
// starts on the real runtime: while the process allocates fast, its GOGC
// is raised after a collection, and the pacer stays armed from one
// collection to the next.
func TestPaceGCRaisesTheRuntimesGOGCUnderAllocation(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a few hundred MiB of garbage")
	}
	t.Setenv("GOGC", "") // as a service runs, whatever the test's environment
	paceGC()
	gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(gogc)
	start := gogc[1].Value.Uint64()
	var sink []byte
	for cycles := uint64(0); cycles < 20; cycles = gogc[1].Value.Uint64() - start {
		for range 1024 {
			sink = make([]byte, 4096)
		}
		runtime.Gosched() // let the pacer's cleanup run
		metrics.Read(gogc)
	}
	runtime.KeepAlive(sink)
	if got := gogc[0].Value.Uint64(); got <= 100 {
		t.Fatalf("GOGC %d after 20 collections of fast allocation, want it raised above 100", got)
	}
}
