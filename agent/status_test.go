package agent_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// gateChecker accepts every credential, but holds the check of one Key ID
// until released: a rotation stuck in its auth check, as with a slow Apple.
type gateChecker struct {
	keyID   atomic.Value // string
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gateChecker) Check(_ context.Context, t agent.AuthTarget) apple.CheckResult {
	if held, _ := g.keyID.Load().(string); t.KeyID == held {
		g.once.Do(func() { close(g.entered) })
		<-g.release
	}
	return apple.CheckResult{Outcome: apple.Accepted}
}

func TestStatusAnswersWhileARotationIsInProgress(t *testing.T) {
	gate := &gateChecker{entered: make(chan struct{}), release: make(chan struct{})}
	h := newHarness(t, func(c *agent.Config) { c.Checker = gate })
	client := waitAPI(t, h.socket)
	a := h.key("")
	add := h.entry("Acme", payload.IntentAdd, "", a, testPassphrase)
	h.push(add)
	h.waitImport("", store.ImportApplied)

	b := h.key(a.ClientID)
	gate.keyID.Store(b.KeyID)
	released := false
	release := func() {
		if !released {
			released = true
			close(gate.release)
		}
	}
	t.Cleanup(release) // the agent finishes the step before it stops
	upd := h.entry("Acme 2", payload.IntentUpdate, "Acme", b, testPassphrase)
	upd.ImportID = "status-during-rotation"
	pushed := time.Now()
	h.push(add, upd)
	<-gate.entered // the rotation now holds the agent's lock, waiting on Apple

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := client.Status(ctx)
	if err != nil {
		t.Fatalf("status while a rotation waits on its auth check: %v", err)
	}
	if st.Source.LastError != "" || st.Source.LastRead.Before(pushed) {
		t.Fatalf("status should show the read of the payload being applied: %+v (pushed %v)", st.Source, pushed)
	}
	if len(st.Tenants) != 1 || st.Tenants[0].Active.KeyID != a.KeyID {
		t.Fatalf("before cutover the old key is active: %+v", st.Tenants)
	}
	release()
	// A client that saw the cut-over gets a status built after it.
	h.waitFor("cut-over", func(e store.Event) bool {
		return e.Kind == store.EvRotationCutover && e.ImportID == upd.ImportID
	})
	if st, err = client.Status(ctx); err != nil || len(st.Tenants) != 1 || st.Tenants[0].Active.KeyID != b.KeyID {
		t.Fatalf("status after the cut-over event: %+v, %v; want %s active", st.Tenants, err, b.KeyID)
	}
	h.waitImport(upd.ImportID, store.ImportApplied)
	if got := h.active("").KeyID; got != b.KeyID {
		t.Fatalf("after the rotation the active key is %s, want %s", got, b.KeyID)
	}
}
