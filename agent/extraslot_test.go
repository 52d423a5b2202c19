package agent_test

import (
	"maps"
	"runtime"
	"sync"
	"testing"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// TestRotationRunsWithOneSchedulerSlotMore: every recorded step of an add
// and an update from a payload runs with GOMAXPROCS one above the
// process's, which it has again once the agent is done with them.
func TestRotationRunsWithOneSchedulerSlotMore(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	var mu sync.Mutex
	points := map[string]int{}
	agent.SetCrashHook(func(point string) {
		mu.Lock()
		defer mu.Unlock()
		points[point] = runtime.GOMAXPROCS(0)
	})
	t.Cleanup(func() { agent.SetCrashHook(nil) })
	h := newHarness(t)
	first := h.key("")
	add := withID("slot-add", h.entry("Acme", payload.IntentAdd, "", first, testPassphrase))
	h.push(add)
	h.waitImport(add.ImportID, store.ImportApplied)
	update := withID("slot-update", h.entry("Acme 2", payload.IntentUpdate, "Acme", h.key(first.ClientID), testPassphrase))
	h.push(add, update)
	h.waitImport(update.ImportID, store.ImportApplied)
	mu.Lock()
	seen := maps.Clone(points)
	mu.Unlock()
	if len(seen) < 3 {
		t.Fatalf("only %d recorded steps seen: %v", len(seen), seen)
	}
	for point, n := range seen {
		if n != procs+1 {
			t.Errorf("GOMAXPROCS %d at %s, want %d", n, point, procs+1)
		}
	}
	// The agent goes on handling the payload a little after the applied
	// event; once it has stopped (Run returned) no change holds the slot.
	h.stop()
	if after := runtime.GOMAXPROCS(0); after != procs {
		t.Errorf("GOMAXPROCS %d after the changes, want %d again", after, procs)
	}
}
