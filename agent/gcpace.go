package agent

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// The garbage collector's pace. Go collects when the heap has grown by
// GOGC percent (100 by default) of what the last collection left live. The
// agent's live heap is small (2–3 MiB), so under load it collected often:
// 200 clients asking for the status 20,000 times a second allocate about
// 60 MB a second, and the agent collected 20 times a second, 40 with
// rotations flat out. Each collection stops the world twice (up to 3 ms on
// two busy cores, GODEBUG=gctrace=1) and takes one of the two scheduler
// slots for its mark phase, and the status p99 followed (docs/BENCHMARKS.md,
// "The collector's pace").
//
// paceGC gives the heap a fixed headroom while the agent allocates fast:
// after each collection, when more than gcBusyRate bytes a second were
// allocated since the one before, GOGC is raised so that the next
// collection comes when the heap has grown by gcHeadroom, or reached it
// (GOGC never below 100); otherwise GOGC goes back to 100, and when it was
// raised the heap no longer needed is returned to the system. The memory
// is paid only while the agent is busy: an agent gone idle is back at the
// default pace after its next collection (Go forces one every two
// minutes). A heap that is large anyway (a payload's key derivation at
// work factor 18 holds 256 MiB) keeps GOGC 100, and nothing is returned
// while the agent stays busy. An admin's GOGC in the service's
// environment is kept as it is.
const (
	gcHeadroom = 32 << 20
	gcBusyRate = 8 << 20 // bytes a second
	// gcBusyBytes is the least allocation between two collections that
	// can show the agent busy: less is a collection forced early (the one
	// that returns the heap, debug.FreeOSMemory, comes milliseconds after
	// the one before), not a rate.
	gcBusyBytes = 1 << 20
	// gcMinHeap is Go's least heap goal at GOGC 100 (the runtime's
	// heapMinimum); it scales with GOGC like the rest of the goal.
	gcMinHeap = 4 << 20
)

var gcPaceOnce sync.Once

// paceGC starts pacing the collector for the rest of the process's life,
// once, unless the GOGC environment variable is set.
func paceGC() {
	if os.Getenv("GOGC") != "" {
		return
	}
	gcPaceOnce.Do(func() {
		p := &gcPacer{headroom: gcHeadroom, busyRate: gcBusyRate, now: time.Now, read: readHeap, set: debug.SetGCPercent,
			release: func() { go debug.FreeOSMemory() }}
		p.arm()
	})
}

// gcPacer sets GOGC after each collection from the heap it left live and
// the rate of allocation since the collection before.
type gcPacer struct {
	headroom uint64
	busyRate uint64 // bytes a second
	now      func() time.Time
	read     func() (base, allocated uint64)
	set      func(percent int) int
	release  func() // returns the heap no longer needed to the system

	mu        sync.Mutex
	last      time.Time
	allocated uint64
	raised    bool // GOGC is above 100
}

// gcSentinel is the object whose cleanup marks the end of a collection: it
// is unreachable from the moment it is armed. Large enough for an
// allocation of its own (the tiny allocator batches objects under 16 bytes,
// whose cleanups may never run).
type gcSentinel struct{ _ [64]byte }

// arm has the collection after this one call cycle, and arm again.
func (p *gcPacer) arm() {
	runtime.AddCleanup(new(gcSentinel), func(p *gcPacer) {
		p.cycle()
		p.arm()
	}, p)
}

// cycle sets GOGC for the next collection.
func (p *gcPacer) cycle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	base, allocated := p.read()
	busy := false
	if elapsed, n := now.Sub(p.last), allocated-p.allocated; !p.last.IsZero() && elapsed > 0 && n >= gcBusyBytes {
		busy = float64(n) >= float64(p.busyRate)*elapsed.Seconds()
	}
	p.last, p.allocated = now, allocated
	percent := gcPercent(base, p.headroom, busy)
	p.set(percent)
	// Back to the default because the agent went idle: the runtime sized
	// what it returns to the system on the goal of the collection just
	// ended (the raised one), and its scavenger would not look again
	// before the next collection, up to two minutes away. Not while busy
	// (a heap grown past the headroom sets the default too): the next
	// collection comes soon anyway, and returning the heap runs a whole
	// collection at once and hands every free page to the kernel, to be
	// faulted in again moments later, in the middle of the load
	// (docs/BENCHMARKS.md, "Run L, and the heap returned only on going
	// idle").
	if p.raised && !busy {
		p.release()
	}
	p.raised = percent > 100
}

// gcPercent is the GOGC that has the next collection wait, when busy,
// until the heap has grown by headroom bytes from base (what the last
// collection left live, with the stacks and globals GOGC also counts), or
// reached headroom bytes when base is below Go's least heap goal, which
// grows with GOGC; 100 otherwise, and never less.
func gcPercent(base, headroom uint64, busy bool) int {
	if !busy {
		return 100
	}
	return int(max(100, headroom*100/max(base, gcMinHeap)))
}

// readHeap reads what GOGC is a percentage of (the heap the last
// collection left live, the goroutines' stacks and the globals) and the
// bytes allocated on the heap since the process started.
func readHeap() (base, allocated uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"},
		{Name: "/gc/scan/globals:bytes"}, {Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64() + s[1].Value.Uint64() + s[2].Value.Uint64(), s[3].Value.Uint64()
}
