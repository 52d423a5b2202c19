package agent_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// rotationFixture is a tenant synced under credential A, ready for an
// update to B under some AuthCheck policy.
type rotationFixture struct {
	h      *harness
	a      appletest.Key
	credA  store.Credential
	tenant string
	add    payload.PayloadEntry
}

// newRotationFixture adds A (AuthCheck at its default) and waits for its first sync.
func newRotationFixture(t *testing.T, opts ...harnessOption) *rotationFixture {
	t.Helper()
	h := newHarness(t, append([]harnessOption{instantRetries, noRetries}, opts...)...)
	f := &rotationFixture{h: h, a: h.key("")}
	f.add = h.entry("Acme", payload.IntentAdd, "", f.a, testPassphrase)
	h.push(f.add)
	if e := h.waitFor("first sync", syncEnded("")); e.Kind != store.EvSyncFinished {
		t.Fatalf("first sync: %+v", e)
	}
	f.credA = h.active("")
	f.tenant = f.credA.TenantID
	return f
}

// milestone names an event for the sequence a rotation goes through.
func milestone(e store.Event) string {
	switch e.Kind {
	case store.EvRotationStaged, store.EvRotationValidated, store.EvRotationCutover, store.EvRotationConfirmed, store.EvRotationFailed:
		return "step:" + e.Fields["step"]
	case store.EvAuthCheck:
		return "auth:" + e.Fields["outcome"]
	case store.EvImportState:
		return "import:" + e.Fields["state"]
	case store.EvSyncStarted, store.EvSyncFinished, store.EvSyncFailed:
		return string(e.Kind)
	}
	return ""
}

// settle reads events until the update has failed or the sync after it has
// ended, and returns the milestones seen and every event's text.
func (f *rotationFixture) settle(t *testing.T) (steps []string, texts []string) {
	t.Helper()
	for {
		e := f.h.waitFor("the update to settle", func(e store.Event) bool { return milestone(e) != "" || e.Message != "" })
		texts = append(texts, e.Message)
		for _, v := range e.Fields {
			texts = append(texts, v)
		}
		m := milestone(e)
		if m == "" {
			continue
		}
		steps = append(steps, m)
		if m == "import:failed" || e.Kind == store.EvSyncFinished || e.Kind == store.EvSyncFailed {
			return steps, texts
		}
	}
}

// wantCredState fails unless credential id is in state; keyed says whether
// its key material must still be there (and readable) or wiped.
func wantCredState(t *testing.T, st *store.Store, id string, state store.CredState, keyed bool) {
	t.Helper()
	if !keyed {
		wantWiped(t, st, id, state)
		return
	}
	c, err := st.Credential(context.Background(), id)
	if err != nil || c.State != state || !c.HasKey {
		t.Fatalf("credential %s: %+v, %v; want %s with its key", id, c, err, state)
	}
	if pem, err := st.Key(context.Background(), id); err != nil || len(pem) == 0 {
		t.Fatalf("key of %s credential %s: %v", state, id, err)
	}
}

// Milestone sequences of an update.
var applied = []string{"step:staged", "auth:accepted", "step:validated", "step:cutover", "import:applied",
	"step:confirmed", string(store.EvSyncStarted), string(store.EvSyncFinished)}

// refused: the auth check stops the update before cut-over.
func refused(outcome string) []string {
	return []string{"step:staged", "auth:" + outcome, "step:failed", "import:failed"}
}

// unchecked: cut-over without an auth check (off), then the sync and what follows it.
func unchecked(then ...string) []string {
	return append([]string{"step:staged", "step:validated", "step:cutover", "import:applied", string(store.EvSyncStarted)}, then...)
}

func registered(h *harness, clientID string) appletest.Key { return h.key(clientID) }

func unregistered(h *harness, clientID string) appletest.Key { return unregisteredKey(h.t, clientID) }

func invalidClientFault(h *harness, clientID string) appletest.Key {
	h.apple.Fail(appletest.Fault{Endpoint: appletest.TokenEndpoint, Mode: appletest.InvalidClient})
	return h.key(clientID)
}

func tokenServerDown(h *harness, clientID string) appletest.Key {
	h.apple.Fail(appletest.Fault{Endpoint: appletest.TokenEndpoint, Mode: appletest.ServerError, Times: -1})
	return h.key(clientID)
}

func closedPort(h *harness, clientID string) appletest.Key {
	h.settings[payload.KeyTokenURL] = closedTokenURL(h.t)
	return h.key(clientID)
}

func TestUpdateUnderEachAuthCheckPolicy(t *testing.T) {
	cases := []struct {
		name    string
		policy  string
		arrange func(h *harness, clientID string) appletest.Key // the fake Apple for the update; returns B
		steps   []string                                        // milestones from the push until it settles
		imp     store.ImportState
		reason  string // in the import's reason ("" = none)
		step    store.Step
		aState  store.CredState // B is active and A this, or A active and B failed
		syncErr bool            // the sync after the cut-over failed
		// heal makes the next sync succeed, which must confirm the rotation.
		heal func(h *harness, b appletest.Key, entries []payload.PayloadEntry)
	}{
		{name: "required accepted: applied and confirmed", policy: payload.AuthRequired, arrange: registered,
			steps: applied, imp: store.ImportApplied, step: store.StepConfirmed, aState: store.CredRetired},
		{name: "required rejected: failed, pending key wiped", policy: payload.AuthRequired, arrange: unregistered,
			steps: refused("rejected"), imp: store.ImportFailed, reason: "rejected", step: store.StepFailed, aState: store.CredActive},
		{name: "required unreachable: failed for a retry, the staged key kept", policy: payload.AuthRequired, arrange: closedPort,
			steps: []string{"step:staged", "auth:unreachable", "import:failed"}, imp: store.ImportFailed, reason: "unreachable",
			step: store.StepStaged, aState: store.CredActive},
		{name: "best-effort accepted: applied and confirmed", policy: payload.AuthBestEffort, arrange: registered,
			steps: applied, imp: store.ImportApplied, step: store.StepConfirmed, aState: store.CredRetired},
		{name: "best-effort rejected: failed, pending key wiped", policy: payload.AuthBestEffort, arrange: invalidClientFault,
			steps: refused("rejected"), imp: store.ImportFailed, reason: "rejected", step: store.StepFailed, aState: store.CredActive},
		{name: "best-effort unreachable: applied, confirmed by the next sync", policy: payload.AuthBestEffort, arrange: tokenServerDown,
			steps: []string{"step:staged", "auth:unreachable", "step:validated", "step:cutover", "import:applied", string(store.EvSyncStarted), string(store.EvSyncFailed)},
			imp:   store.ImportApplied, step: store.StepCutover, aState: store.CredPrevious, syncErr: true,
			heal: func(h *harness, _ appletest.Key, _ []payload.PayloadEntry) { h.apple.ClearFaults() }},
		{name: "off accepted: applied, confirmed by its first sync", policy: payload.AuthOff, arrange: registered,
			steps: unchecked("step:confirmed", string(store.EvSyncFinished)),
			imp:   store.ImportApplied, step: store.StepConfirmed, aState: store.CredRetired},
		{name: "off rejected: applied, unconfirmed until the key works", policy: payload.AuthOff, arrange: unregistered,
			steps: unchecked(string(store.EvSyncFailed)), imp: store.ImportApplied, step: store.StepCutover, aState: store.CredPrevious, syncErr: true,
			heal: func(h *harness, b appletest.Key, _ []payload.PayloadEntry) {
				h.apple.RegisterCredential(b.ClientID, b.KeyID, &b.Private.PublicKey) // the admin fixes it in ABM
			}},
		{name: "off unreachable: applied, confirmed once Apple answers", policy: payload.AuthOff, arrange: closedPort,
			steps: unchecked(string(store.EvSyncFailed)), imp: store.ImportApplied, step: store.StepCutover, aState: store.CredPrevious, syncErr: true,
			heal: func(h *harness, _ appletest.Key, entries []payload.PayloadEntry) {
				h.settings[payload.KeyTokenURL] = h.apple.TokenURL()
				h.push(entries...)
				h.waitFor("the corrected payload", isKind(store.EvSourceRead))
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newRotationFixture(t)
			h, ctx, st := f.h, context.Background(), f.h.agent.Store()
			h.settings[payload.KeyAuthCheck] = tc.policy
			b := tc.arrange(h, f.a.ClientID)
			entries := []payload.PayloadEntry{f.add, h.entry("Acme 2026", payload.IntentUpdate, "Acme", b, testPassphrase)}
			h.push(entries...)
			steps, texts := f.settle(t)
			if strings.Join(steps, " ") != strings.Join(tc.steps, " ") {
				t.Fatalf("milestones:\n got %v\nwant %v", steps, tc.steps)
			}
			keyLine := strings.Split(string(b.PEM), "\n")[1]
			for _, s := range texts {
				if strings.Contains(s, keyLine) {
					t.Fatalf("an event shows key material: %q", s)
				}
			}

			rot, err := st.CurrentRotation(ctx, f.tenant)
			if err != nil || rot.Step != tc.step || rot.FromCredentialID != f.credA.ID {
				t.Fatalf("rotation: %+v, %v; want step %s", rot, err, tc.step)
			}
			imp, err := st.Import(ctx, rot.ImportID)
			if err != nil || imp.State != tc.imp || (tc.reason == "") != (imp.Reason == "") || !strings.Contains(imp.Reason, tc.reason) {
				t.Fatalf("import: %+v, %v; want %s with reason %q", imp, err, tc.imp, tc.reason)
			}
			if strings.Contains(imp.Reason, keyLine) {
				t.Fatalf("import reason shows key material: %q", imp.Reason)
			}
			wantCredState(t, st, f.credA.ID, tc.aState, tc.aState != store.CredRetired)
			if tc.imp == store.ImportFailed {
				if tc.step == store.StepStaged {
					wantCredState(t, st, rot.ToCredentialID, store.CredPending, true) // kept for the retry
				} else {
					wantWiped(t, st, rot.ToCredentialID, store.CredFailed)
				}
				if h.active(f.tenant).ID != f.credA.ID {
					t.Fatal("a failed update changed the active credential")
				}
			} else {
				wantCredState(t, st, rot.ToCredentialID, store.CredActive, true)
			}
			ten, err := st.Tenant(ctx, f.tenant)
			if err != nil || (ten.SyncError != "") != tc.syncErr {
				t.Fatalf("tenant last sync error %q (%v), want set: %v", ten.SyncError, err, tc.syncErr)
			}
			wantRecords(t, st, f.tenant, 25)

			if tc.heal == nil {
				h.healthy()
				return
			}
			tc.heal(h, b, entries)
			if err := h.agent.SyncTenant(ctx, f.tenant); err != nil {
				t.Fatalf("sync after healing: %v", err)
			}
			if rot, err := st.CurrentRotation(ctx, f.tenant); err != nil || rot.Step != store.StepConfirmed {
				t.Fatalf("rotation after a successful sync: %+v, %v", rot, err)
			}
			wantWiped(t, st, f.credA.ID, store.CredRetired)
			if ten, err := st.Tenant(ctx, f.tenant); err != nil || ten.SyncError != "" {
				t.Fatalf("sync error not cleared: %q, %v", ten.SyncError, err)
			}
			h.healthy()
		})
	}
}

func TestRequiredUnreachableIsRetriedLater(t *testing.T) {
	var retries []int
	f := newRotationFixture(t, func(c *agent.Config) {
		c.Backoff = func(n int) time.Duration { retries = append(retries, n); return 0 }
	})
	h, ctx, st := f.h, context.Background(), f.h.agent.Store()
	h.settings[payload.KeyAuthCheck] = payload.AuthRequired
	// Exactly one check's worth of 503s: the first attempt is unreachable, the retry gets through.
	h.apple.Fail(appletest.Fault{Endpoint: appletest.TokenEndpoint, Mode: appletest.ServerError, Times: apple.DefaultMaxTries})
	b := h.key(f.a.ClientID)
	h.push(f.add, h.entry("Acme 2026", payload.IntentUpdate, "", b, testPassphrase))
	failed := h.waitImport("", store.ImportFailed)
	if !strings.Contains(failed.Reason, "unreachable") {
		t.Fatalf("first attempt: %+v", failed)
	}
	imp := h.waitImport(failed.ID, store.ImportApplied)
	h.waitFor("confirmation", func(e store.Event) bool { return milestone(e) == "step:confirmed" })
	if imp.Attempts != 2 || len(retries) != 1 || retries[0] != 1 {
		t.Fatalf("import %+v after retries %v; want applied at the second attempt", imp, retries)
	}
	// The retry checked the credential the first attempt staged and kept:
	// one credential with B's key, never wiped and staged again.
	creds := credByKey(t, st, b.KeyID)
	if len(creds) != 1 || creds[0].ID != h.active(f.tenant).ID {
		t.Fatalf("credentials with B's key: %+v; want the one staged first, now active", creds)
	}
	wantCredState(t, st, creds[0].ID, store.CredActive, true)
	wantWiped(t, st, f.credA.ID, store.CredRetired)
	rot, err := st.CurrentRotation(ctx, f.tenant)
	if err != nil || rot.Step != store.StepConfirmed || rot.ImportID != imp.ID {
		t.Fatalf("rotation: %+v, %v", rot, err)
	}
	h.healthy()
}

func TestBestEffortUnreachableIsConfirmedByALaterCheck(t *testing.T) {
	ticks := make(chan time.Time)
	f := newRotationFixture(t, func(c *agent.Config) { c.SyncTicks = ticks })
	h, ctx, st := f.h, context.Background(), f.h.agent.Store()
	h.settings[payload.KeySyncInterval] = "0" // no sync: only the check can confirm
	h.apple.Fail(appletest.Fault{Endpoint: appletest.TokenEndpoint, Mode: appletest.ServerError, Times: -1})
	b := h.key(f.a.ClientID)
	h.push(f.add, h.entry("Acme 2026", payload.IntentUpdate, "", b, testPassphrase))
	h.waitImport("", store.ImportApplied)

	// While Apple is down a tick's check changes nothing.
	tickHandled(ticks, time.Now())
	if rot, err := st.CurrentRotation(ctx, f.tenant); err != nil || rot.Step != store.StepCutover {
		t.Fatalf("rotation while Apple is down: %+v, %v", rot, err)
	}
	wantCredState(t, st, f.credA.ID, store.CredPrevious, true)

	h.apple.ClearFaults()
	tickHandled(ticks, time.Now())
	if rot, err := st.CurrentRotation(ctx, f.tenant); err != nil || rot.Step != store.StepConfirmed {
		t.Fatalf("rotation after a successful check: %+v, %v", rot, err)
	}
	wantWiped(t, st, f.credA.ID, store.CredRetired)
	if c := h.active(f.tenant); c.KeyID != b.KeyID || c.LastAuthAt.IsZero() {
		t.Fatalf("active after confirmation: %+v", c)
	}
	h.healthy()
}
