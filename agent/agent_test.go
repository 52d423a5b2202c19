package agent_test

import (
	"context"
	"testing"

	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

func TestAddThenUpdateByNameKeepsTenantData(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	a := h.key("")
	h.push(h.entry("Acme", payload.IntentAdd, "", a, testPassphrase))
	h.waitFor("first sync", func(e store.Event) bool { return e.Kind == store.EvSyncFinished })
	first := h.active("")
	devices, coverage, err := h.agent.Store().Counts(ctx, first.TenantID)
	if err != nil || devices != 25 {
		t.Fatalf("after add: %d devices, %v", devices, err)
	}

	b := h.key(a.ClientID)
	h.push(h.entry("Acme 2", payload.IntentUpdate, "acme", b, testPassphrase))
	imp := h.waitImport("", store.ImportApplied)
	h.waitFor("sync under the new key", func(e store.Event) bool { return e.Kind == store.EvSyncFinished })

	now := h.active("")
	if now.TenantID != first.TenantID || now.KeyID != b.KeyID || imp.TenantID != first.TenantID {
		t.Fatalf("update moved tenants or did not activate the new key: %+v", now)
	}
	old, err := h.agent.Store().Credential(ctx, first.ID)
	if err != nil || old.State != store.CredRetired || old.HasKey {
		t.Fatalf("old credential after confirmed rotation: %+v, %v", old, err)
	}
	d2, c2, _ := h.agent.Store().Counts(ctx, first.TenantID)
	if d2 != devices || c2 != coverage {
		t.Fatalf("records after rotation: %d/%d, before %d/%d", d2, c2, devices, coverage)
	}
	evs, err := h.agent.Store().Events(ctx, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	added := 0
	for _, e := range evs {
		if e.Kind == store.EvCredentialAdded {
			added++
		}
	}
	if added != 1 {
		t.Fatalf("audit log holds %d credential.added events for one add, want 1", added)
	}
	h.healthy()
}
