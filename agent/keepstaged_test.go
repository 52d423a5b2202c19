package agent_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// keptUpdate adds tenant Acme, puts the token endpoint's clock twenty
// minutes ahead and pushes update b under a required auth check: b's
// credential is staged and kept. It returns the tenant and that rotation.
func keptUpdate(t *testing.T, h *harness) (string, store.Rotation) {
	t.Helper()
	h.noSync()
	h.settings[payload.KeyAuthCheck] = payload.AuthRequired
	old := h.key("")
	add := withID("a", h.entry("Acme", payload.IntentAdd, "", old, testPassphrase))
	h.push(add)
	h.waitImport("a", store.ImportApplied)
	h.apple.SetClock(laterClock{20 * time.Minute})
	h.last = withID("b", h.entry("Acme 2027", payload.IntentUpdate, "Acme", h.key(old.ClientID), testPassphrase))
	h.push(add, h.last)
	failed := h.waitImport("b", store.ImportFailed)
	if !strings.Contains(failed.Reason, "system clock is off by 20m0s") || !strings.Contains(failed.Reason, "kept") {
		t.Fatalf("import b: %+v", failed)
	}
	rot, err := h.agent.Store().CurrentRotation(context.Background(), failed.TenantID)
	if err != nil || rot.Step != store.StepStaged || rot.ImportID != "b" {
		t.Fatalf("rotation: %+v, %v; want b's, staged", rot, err)
	}
	wantCredState(t, h.agent.Store(), rot.ToCredentialID, store.CredPending, true)
	return failed.TenantID, rot
}

func TestClockOffKeepsTheStagedKeyAcrossARestart(t *testing.T) {
	h := newHarness(t, noRetries)
	tenant, rot := keptUpdate(t, h)

	// The clock is fixed and the agent restarted: recovery keeps the
	// staged rotation, the first sight of the payload retries b, and the
	// check passes on the very credential staged before.
	h.stop()
	h.apple.SetClock(laterClock{0})
	h.start(noRetries)
	h.waitFor("the kept credential taken up", func(e store.Event) bool {
		return e.Kind == store.EvRotationResumed && e.RotationID == rot.ID && e.CredentialID == rot.ToCredentialID
	})
	imp := h.waitImport("b", store.ImportApplied)
	if c := h.active(tenant); c.ID != rot.ToCredentialID || imp.Attempts != 2 {
		t.Fatalf("active %s after %d attempts; want the staged %s at the second", c.ID, imp.Attempts, rot.ToCredentialID)
	}
	evs, err := h.agent.Store().Events(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Kind == store.EvRotationFailed {
			t.Fatalf("a rotation failed on the way: %+v", e)
		}
	}
	h.healthy()
}

func TestKeptStagedKeyGivesWayToANewerPayloadAndIsWipedWhenWithdrawn(t *testing.T) {
	h := newHarness(t, noRetries)
	tenant, rotB := keptUpdate(t, h)
	st := h.agent.Store()

	// A newer update c while the clock is still off: b's staged key is
	// wiped for c's, which is kept in turn.
	c := withID("c", h.entry("Acme 2028", payload.IntentUpdate, "Acme", h.key(h.active(tenant).ClientID), testPassphrase))
	h.push(h.last, c)
	h.waitImport("c", store.ImportFailed)
	wantWiped(t, st, rotB.ToCredentialID, store.CredFailed)
	rotC, err := st.CurrentRotation(context.Background(), tenant)
	if err != nil || rotC.ImportID != "c" || rotC.Step != store.StepStaged {
		t.Fatalf("rotation: %+v, %v; want c's, staged", rotC, err)
	}
	wantCredState(t, st, rotC.ToCredentialID, store.CredPending, true)

	// The entries leave the managed preferences: c's kept key is wiped.
	h.removePayload()
	h.waitImport("c", store.ImportWithdrawn)
	wantWiped(t, st, rotC.ToCredentialID, store.CredFailed)
	if rots, err := st.UnfinishedRotations(context.Background()); err != nil || len(rots) != 0 {
		t.Fatalf("unfinished rotations after the withdrawal: %+v, %v", rots, err)
	}
	h.healthy()
}

func TestDismissingAnImportWipesItsKeptStagedKey(t *testing.T) {
	h := newHarness(t, noRetries)
	_, rot := keptUpdate(t, h)
	if imp, err := h.agent.Dismiss(context.Background(), "b"); err != nil || imp.State != store.ImportDismissed {
		t.Fatalf("dismiss: %+v, %v", imp, err)
	}
	wantWiped(t, h.agent.Store(), rot.ToCredentialID, store.CredFailed)
	h.healthy()
}
