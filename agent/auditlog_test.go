package agent_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// A full rotation (staged → validated → cutover → confirmed) leaves exactly
// one audit row per step, written by the store, and the agent fans out those
// same rows (same Seq) rather than writing rows of its own.
func TestRotationWritesOneAuditRowPerStep(t *testing.T) {
	f := newRotationFixture(t)
	h, ctx, st := f.h, context.Background(), f.h.agent.Store()
	h.settings[payload.KeyAuthCheck] = payload.AuthRequired
	b := h.key(f.a.ClientID)
	update := withID("update-b", h.entry("Acme 2026", payload.IntentUpdate, "Acme", b, testPassphrase))
	h.push(f.add, update)

	var announced []store.Event
	h.waitFor("the confirmation", func(e store.Event) bool {
		if e.RotationID != "" {
			announced = append(announced, e)
		}
		return e.Kind == store.EvRotationConfirmed
	})

	rot, err := st.CurrentRotation(ctx, f.tenant)
	if err != nil {
		t.Fatal(err)
	}
	credB := h.active(f.tenant)
	if rot.Step != store.StepConfirmed || rot.ImportID != update.ImportID || rot.ToCredentialID != credB.ID || rot.FromCredentialID != f.credA.ID {
		t.Fatalf("rotation = %+v, want confirmed from %s to %s", rot, f.credA.ID, credB.ID)
	}
	evs, err := st.Events(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var rows []store.Event
	for _, e := range evs {
		if e.RotationID == rot.ID {
			rows = append(rows, e)
		}
	}

	type row struct {
		Kind                                    store.EventKind
		TenantID, ImportID, CredentialID, RotID string
		Fields                                  map[string]string
	}
	fields := func(step store.Step) map[string]string {
		return map[string]string{"step": string(step), "from": f.credA.ID, "to": credB.ID}
	}
	want := []row{
		{store.EvRotationStaged, f.tenant, update.ImportID, credB.ID, rot.ID, fields(store.StepStaged)},
		{store.EvRotationValidated, f.tenant, update.ImportID, credB.ID, rot.ID, fields(store.StepValidated)},
		{store.EvRotationCutover, f.tenant, update.ImportID, credB.ID, rot.ID, fields(store.StepCutover)},
		{store.EvRotationConfirmed, f.tenant, update.ImportID, credB.ID, rot.ID, fields(store.StepConfirmed)},
	}
	var got []row
	for i, e := range rows {
		got = append(got, row{e.Kind, e.TenantID, e.ImportID, e.CredentialID, e.RotationID, e.Fields})
		if i > 0 && e.Seq <= rows[i-1].Seq {
			t.Errorf("row %d has seq %d after %d; want the log in order", i, e.Seq, rows[i-1].Seq)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("audit rows of rotation %s (-want +got):\n%s", rot.ID, diff)
	}
	if diff := cmp.Diff(rows, announced); diff != "" {
		t.Fatalf("events fanned out differ from the audit rows (-rows +announced):\n%s", diff)
	}

	var kinds []store.EventKind
	for _, e := range evs {
		if e.ImportID == update.ImportID {
			kinds = append(kinds, e.Kind)
		}
	}
	wantKinds := []store.EventKind{store.EvImportRecorded, store.EvRotationStaged, store.EvRotationValidated,
		store.EvRotationCutover, store.EvImportState, store.EvRotationConfirmed}
	if diff := cmp.Diff(wantKinds, kinds); diff != "" {
		t.Fatalf("audit rows of import %s (-want +got):\n%s", update.ImportID, diff)
	}
}
