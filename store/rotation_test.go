package store_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rekeyd/rekey/store"
)

func TestAddCredentialCreatesTenantActiveCredentialAndAppliesImport(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	if _, _, err := s.RecordImport(ctx, store.Import{ID: "imp-1", Hash: "h1", Name: "Main"}); err != nil {
		t.Fatal(err)
	}
	nc := newCred("Main")
	nc.ImportID = "imp-1"
	ten, cred, _, err := s.AddCredential(ctx, nc, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	if ten.Name != "Acme" || ten.Scope != "business.api" || cred.State != store.CredActive || !cred.HasKey {
		t.Fatalf("unexpected tenant %+v / credential %+v", ten, cred)
	}
	im, err := s.Import(ctx, "imp-1")
	if err != nil {
		t.Fatal(err)
	}
	if im.State != store.ImportApplied || im.TenantID != ten.ID || im.CredentialID != cred.ID || im.KeyID != nc.KeyID {
		t.Fatalf("import not applied and linked: %+v", im)
	}
	evs, err := s.Events(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	// One transaction wrote both: the credential added, the import applied.
	if len(evs) != 2 || evs[0].Kind != store.EvCredentialAdded || evs[0].CredentialID != cred.ID ||
		evs[1].Kind != store.EvImportState || evs[1].ImportID != "imp-1" || evs[1].Fields["state"] != string(store.ImportApplied) ||
		!evs[1].Time.Equal(evs[0].Time) {
		t.Fatalf("events = %+v", evs)
	}
	mustHealthy(t, s)
}

func TestRotationHappyPathKeepsOldKeyUntilConfirm(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	ten, old := addTenant(t, s, "Main")
	if _, _, err := s.RecordImport(ctx, store.Import{ID: "imp-2", Hash: "h2", Intent: "update"}); err != nil {
		t.Fatal(err)
	}
	nc := newCred("Main 2026")
	nc.ImportID = "imp-2"
	rot, pending, _, err := s.Stage(ctx, ten.ID, nc)
	if err != nil {
		t.Fatal(err)
	}
	if rot.Step != store.StepStaged || rot.FromCredentialID != old.ID || rot.ToCredentialID != pending.ID || pending.State != store.CredPending {
		t.Fatalf("stage: rotation %+v, credential %+v", rot, pending)
	}
	if im, _ := s.Import(ctx, "imp-2"); im.State != store.ImportApplying {
		t.Fatalf("import state after stage = %s, want applying", im.State)
	}
	if _, err := s.Validated(ctx, rot.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Validated(ctx, rot.ID); err != nil {
		t.Fatalf("validated twice should be a no-op: %v", err)
	}
	if _, err := s.Cutover(ctx, rot.ID); err != nil {
		t.Fatal(err)
	}
	want := map[string]store.CredState{old.ID: store.CredPrevious, pending.ID: store.CredActive}
	if diff := cmp.Diff(want, states(t, s, ten.ID)); diff != "" {
		t.Fatalf("states after cutover (-want +got):\n%s", diff)
	}
	if im, _ := s.Import(ctx, "imp-2"); im.State != store.ImportApplied || im.CredentialID != pending.ID {
		t.Fatalf("import after cutover = %+v", im)
	}
	if _, err := s.Key(ctx, old.ID); err != nil {
		t.Fatalf("previous key must stay readable until confirm: %v", err)
	}
	// A token the previous credential got (a sync that began before the
	// cut-over) confirms nothing.
	if _, err := s.Confirm(ctx, ten.ID, old.ID); !errors.Is(err, store.ErrState) {
		t.Fatalf("confirm with the previous credential: %v, want ErrState", err)
	}
	if diff := cmp.Diff(want, states(t, s, ten.ID)); diff != "" {
		t.Fatalf("states after a confirm by the previous credential (-want +got):\n%s", diff)
	}
	if _, err := s.Confirm(ctx, ten.ID, pending.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Key(ctx, old.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("key of retired credential: err = %v, want ErrNotFound", err)
	}
	got, _ := s.Credential(ctx, old.ID)
	if got.State != store.CredRetired || got.HasKey || got.RetiredAt.IsZero() {
		t.Fatalf("old credential after confirm = %+v", got)
	}
	if r, _ := s.CurrentRotation(ctx, ten.ID); r.Step != store.StepConfirmed {
		t.Fatalf("rotation step = %s, want confirmed", r.Step)
	}
	var kinds []store.EventKind
	evs, _ := s.Events(ctx, 0, 0)
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	wantKinds := []store.EventKind{store.EvCredentialAdded, store.EvRotationStaged, store.EvRotationValidated, store.EvRotationCutover,
		store.EvImportState, store.EvRotationConfirmed} // the import applied with the cut-over
	if diff := cmp.Diff(wantKinds, kinds); diff != "" {
		t.Fatalf("event kinds (-want +got):\n%s", diff)
	}
	mustHealthy(t, s)
}

func TestCutoverRetiresAndWipesAnOlderPreviousFirst(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	ten, first := addTenant(t, s, "A")
	r1, second := stageValidated(t, s, ten.ID, "B")
	if _, err := s.Cutover(ctx, r1.ID); err != nil {
		t.Fatal(err)
	}
	r2, third := stageValidated(t, s, ten.ID, "C")
	if _, err := s.Cutover(ctx, r2.ID); err != nil {
		t.Fatal(err)
	}
	want := map[string]store.CredState{first.ID: store.CredRetired, second.ID: store.CredPrevious, third.ID: store.CredActive}
	if diff := cmp.Diff(want, states(t, s, ten.ID)); diff != "" {
		t.Fatalf("states (-want +got):\n%s", diff)
	}
	if _, err := s.Key(ctx, first.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("first key not wiped: %v", err)
	}
	mustHealthy(t, s)
}

func TestFailRotationWipesPendingAndLeavesActiveAndDataAlone(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	ten, active := addTenant(t, s, "A")
	if err := s.UpsertDevices(ctx, ten.ID, []store.Device{{Serial: "C02X1"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.RecordImport(ctx, store.Import{ID: "imp-f", Hash: "hf"}); err != nil {
		t.Fatal(err)
	}
	before, _, _ := s.Devices(ctx, ten.ID, "", 10)
	nc := newCred("B")
	nc.ImportID = "imp-f"
	rot, pending, _, err := s.Stage(ctx, ten.ID, nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.FailRotation(ctx, rot.ID, "auth check rejected: invalid_client"); err != nil {
		t.Fatal(err)
	}
	want := map[string]store.CredState{active.ID: store.CredActive, pending.ID: store.CredFailed}
	if diff := cmp.Diff(want, states(t, s, ten.ID)); diff != "" {
		t.Fatalf("states (-want +got):\n%s", diff)
	}
	if _, err := s.Key(ctx, pending.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("failed key not wiped: %v", err)
	}
	if _, err := s.Key(ctx, active.ID); err != nil {
		t.Fatalf("active key lost: %v", err)
	}
	im, _ := s.Import(ctx, "imp-f")
	if im.State != store.ImportFailed || im.Reason != "auth check rejected: invalid_client" {
		t.Fatalf("import = %+v", im)
	}
	after, _, _ := s.Devices(ctx, ten.ID, "", 10)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Fatalf("devices changed (-before +after):\n%s", diff)
	}
	if _, err := s.FailRotation(ctx, rot.ID, "again"); !errors.Is(err, store.ErrState) {
		t.Fatalf("failing a failed rotation: err = %v, want ErrState", err)
	}
	// The tenant can rotate again after a failure.
	stageValidated(t, s, ten.ID, "C")
	mustHealthy(t, s)
}

func TestRotationStepErrors(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	ten, _ := addTenant(t, s, "A")
	rot, _, _, err := s.Stage(ctx, ten.ID, newCred("B"))
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		err  error
		want error
	}{
		"second unfinished rotation is an invariant": {errOf(s.Stage(ctx, ten.ID, newCred("C"))), store.ErrInvariant},
		"cutover before validation is a state error": {errOf1(s.Cutover(ctx, rot.ID)), store.ErrState},
		"confirm without previous is a state error":  {errOf1(s.Confirm(ctx, ten.ID, rot.ToCredentialID)), store.ErrState},
		"rollback without previous is a state error": {errOf1(s.Rollback(ctx, ten.ID)), store.ErrState},
		"unknown rotation is not found":              {errOf1(s.Validated(ctx, "rot_000000000000")), store.ErrNotFound},
		"unknown tenant is not found":                {errOf(s.Stage(ctx, "ten_000000000000", newCred("D"))), store.ErrNotFound},
		"scope mismatch is an invariant":             {errOf(s.Stage(ctx, ten.ID, schoolCred())), store.ErrInvariant},
		"unrecorded import is not found":             {errOf(s.AddCredential(ctx, withImport(newCred("E"), "never-recorded"), "")), store.ErrNotFound},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: err = %v, want %v", name, tc.err, tc.want)
		}
	}
	mustHealthy(t, s)
}

func errOf[A, B, C any](_ A, _ B, _ C, err error) error { return err }

func errOf1[A any](_ A, err error) error { return err }

func schoolCred() store.NewCredential {
	nc := newCred("School")
	nc.Scope = "school.api"
	return nc
}

func TestRollbackSwapsActiveAndPreviousAndBack(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	ten, old := addTenant(t, s, "A")
	rot, nw := stageValidated(t, s, ten.ID, "B")
	if _, err := s.Cutover(ctx, rot.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rollback(ctx, ten.ID); err != nil {
		t.Fatal(err)
	}
	want := map[string]store.CredState{old.ID: store.CredActive, nw.ID: store.CredPrevious}
	if diff := cmp.Diff(want, states(t, s, ten.ID)); diff != "" {
		t.Fatalf("after rollback (-want +got):\n%s", diff)
	}
	if r, _ := s.CurrentRotation(ctx, ten.ID); r.Step != store.StepRolledBack {
		t.Fatalf("rotation step = %s, want rolled-back", r.Step)
	}
	mustHealthy(t, s)
	if _, err := s.Rollback(ctx, ten.ID); err != nil {
		t.Fatal(err)
	}
	want = map[string]store.CredState{old.ID: store.CredPrevious, nw.ID: store.CredActive}
	if diff := cmp.Diff(want, states(t, s, ten.ID)); diff != "" {
		t.Fatalf("after rolling back the rollback (-want +got):\n%s", diff)
	}
	if r, _ := s.CurrentRotation(ctx, ten.ID); r.Step != store.StepCutover {
		t.Fatalf("rotation step = %s, want cutover", r.Step)
	}
	mustHealthy(t, s)
}

func TestCutoverRefusedWhenActiveChangedSinceStaging(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	ten, _ := addTenant(t, s, "A")
	r1, _ := stageValidated(t, s, ten.ID, "B")
	if _, err := s.Cutover(ctx, r1.ID); err != nil {
		t.Fatal(err)
	}
	r2, _ := stageValidated(t, s, ten.ID, "C")
	if _, err := s.Rollback(ctx, ten.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cutover(ctx, r2.ID); !errors.Is(err, store.ErrState) {
		t.Fatalf("cutover after rollback: err = %v, want ErrState", err)
	}
	if _, err := s.FailRotation(ctx, r2.ID, "active changed"); err != nil {
		t.Fatal(err)
	}
	mustHealthy(t, s)
}

func TestCutoverTouchesNoTenantData(t *testing.T) {
	s, _, clk := openStore(t)
	ctx := context.Background()
	ten, _ := addTenant(t, s, "A")
	devs := []store.Device{{Serial: "A1", Model: "Mac14,2"}, {Serial: "A2", Attrs: []byte(`{"color":"silver"}`)}}
	if err := s.UpsertDevices(ctx, ten.ID, devs); err != nil {
		t.Fatal(err)
	}
	if err := s.UpsertCoverage(ctx, ten.ID, []store.DeviceCoverage{{Serial: "A1", Records: []store.Coverage{{ID: "c1", Status: "ACTIVE"}}}, {Serial: "A2"}}); err != nil {
		t.Fatal(err)
	}
	before, _, _ := s.Devices(ctx, ten.ID, "", 10)
	rot, _ := stageValidated(t, s, ten.ID, "B")
	clk.Advance(1e9)
	if _, err := s.Cutover(ctx, rot.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Confirm(ctx, ten.ID, rot.ToCredentialID); err != nil {
		t.Fatal(err)
	}
	after, _, _ := s.Devices(ctx, ten.ID, "", 10)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Fatalf("tenant data changed by cutover (-before +after):\n%s", diff)
	}
	if after[0].CoverageState != "active" || after[1].CoverageState != "none" || len(after[0].Coverage) != 1 {
		t.Fatalf("coverage not stored as given: %+v", after)
	}
}

func TestKeyIsNeverInErrorsOrRecords(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	nc := newCred("A")
	pem := bytes.Clone(nc.KeyPEM)
	ten, c, _, err := s.AddCredential(ctx, nc, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Key(ctx, c.ID)
	if err != nil || !bytes.Equal(got, pem) {
		t.Fatalf("key round trip: %v", err)
	}
	// Copying a sealed key onto another credential does not open it (AAD = credential id).
	rot, other, _, err := s.Stage(ctx, ten.ID, newCred("B"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ExecRaw(ctx, `UPDATE credentials SET sealed_key = (SELECT sealed_key FROM credentials WHERE id = ?) WHERE id = ?`, c.ID, other.ID); err != nil {
		t.Fatal(err)
	}
	_, err = s.Key(ctx, other.ID)
	if !errors.Is(err, store.ErrSealKey) {
		t.Fatalf("moved sealed key: err = %v, want ErrSealKey", err)
	}
	var sealed []byte
	if err := s.QueryRaw(ctx, &sealed, `SELECT sealed_key FROM credentials WHERE id = ?`, c.ID); err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{err.Error(), string(sealed)} {
		if bytes.Contains([]byte(text), pem[40:80]) || (len(sealed) > 0 && text != string(sealed) && bytes.Contains([]byte(text), sealed[10:30])) {
			t.Fatalf("secret material leaked into %q", text)
		}
	}
	_ = rot
}

func withImport(nc store.NewCredential, id string) store.NewCredential {
	nc.ImportID = id
	return nc
}
