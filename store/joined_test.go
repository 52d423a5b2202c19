package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rekeyd/rekey/store"
)

func TestRecordImportLoggedWritesItsEventOnceInTheSameTransaction(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	im, ev, err := s.RecordImportLogged(ctx, store.Import{ID: "imp-1", Hash: "h1", Name: "Main"})
	if err != nil {
		t.Fatal(err)
	}
	if im.State != store.ImportPendingUnlock || ev.Kind != store.EvImportRecorded || ev.ImportID != "imp-1" || ev.Seq == 0 {
		t.Fatalf("import %+v, event %+v", im, ev)
	}
	again, ev2, err := s.RecordImportLogged(ctx, store.Import{ID: "imp-1", Hash: "h1", Name: "Main"})
	if err != nil || again.ID != "imp-1" || ev2.Kind != "" {
		t.Fatalf("known import: %+v, event %+v, %v; want the stored import and no event", again, ev2, err)
	}
	if _, _, err := s.RecordImportLogged(ctx, store.Import{ID: "imp-1", Hash: "other"}); !errors.Is(err, store.ErrImportConflict) {
		t.Fatalf("other hash: %v, want ErrImportConflict", err)
	}
	evs, _ := s.Events(ctx, 0, 0)
	if len(evs) != 1 || evs[0].Seq != ev.Seq {
		t.Fatalf("events = %+v, want the one import.recorded", evs)
	}
}

func TestValidateAndCutoverIsBothStepsInOne(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	ten, old := addTenant(t, s, "Main")
	if _, _, err := s.RecordImport(ctx, store.Import{ID: "imp-2", Hash: "h2"}); err != nil {
		t.Fatal(err)
	}
	rot, pending, _, err := s.Stage(ctx, ten.ID, withImport(newCred("Main 2"), "imp-2"))
	if err != nil {
		t.Fatal(err)
	}
	if im, _ := s.Import(ctx, "imp-2"); im.State != store.ImportApplying || im.Attempts != 1 || im.KeyID != pending.KeyID {
		t.Fatalf("import after stage = %+v, want applying, one attempt, the key's identity", im)
	}
	validated, cut, err := s.ValidateAndCutover(ctx, rot.ID)
	if err != nil {
		t.Fatal(err)
	}
	if validated.Kind != store.EvRotationValidated || cut.Kind != store.EvRotationCutover || cut.Seq != validated.Seq+1 {
		t.Fatalf("events %+v, %+v", validated, cut)
	}
	want := map[string]store.CredState{old.ID: store.CredPrevious, pending.ID: store.CredActive}
	if diff := cmp.Diff(want, states(t, s, ten.ID)); diff != "" {
		t.Fatalf("states (-want +got):\n%s", diff)
	}
	if im, _ := s.Import(ctx, "imp-2"); im.State != store.ImportApplied {
		t.Fatalf("import = %+v, want applied", im)
	}
	if _, _, err := s.ValidateAndCutover(ctx, rot.ID); !errors.Is(err, store.ErrState) {
		t.Fatalf("again after cut-over: %v, want ErrState", err)
	}
	mustHealthy(t, s)
}

func TestJoinedStepsCommitNothingWhenTheCutoverIsRefused(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	ten, _ := addTenant(t, s, "Main")
	r1, _ := stageValidated(t, s, ten.ID, "B")
	if _, err := s.Cutover(ctx, r1.ID); err != nil {
		t.Fatal(err)
	}
	rot, _, _, err := s.Stage(ctx, ten.ID, newCred("C"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rollback(ctx, ten.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ValidateAndCutover(ctx, rot.ID); !errors.Is(err, store.ErrState) {
		t.Fatalf("cut-over after a rollback: %v, want ErrState", err)
	}
	if r, _ := s.CurrentRotation(ctx, ten.ID); r.ID != rot.ID || r.Step != store.StepStaged {
		t.Fatalf("rotation = %+v, want still staged: the validation was not committed alone", r)
	}
	mustHealthy(t, s)
}

func TestStageAndCutoverIsThreeStepsInOne(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	ten, old := addTenant(t, s, "Main")
	if _, _, err := s.RecordImport(ctx, store.Import{ID: "imp-3", Hash: "h3"}); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Events(ctx, 0, 0)
	rot, c, evs, err := s.StageAndCutover(ctx, ten.ID, withImport(newCred("Main 3"), "imp-3"))
	if err != nil {
		t.Fatal(err)
	}
	var kinds []store.EventKind
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	if diff := cmp.Diff([]store.EventKind{store.EvRotationStaged, store.EvRotationValidated, store.EvRotationCutover}, kinds); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	after, _ := s.Events(ctx, 0, 0)
	if len(after) != len(before)+3 {
		t.Fatalf("%d events written, want 3", len(after)-len(before))
	}
	want := map[string]store.CredState{old.ID: store.CredPrevious, c.ID: store.CredActive}
	if diff := cmp.Diff(want, states(t, s, ten.ID)); diff != "" {
		t.Fatalf("states (-want +got):\n%s", diff)
	}
	if r, _ := s.CurrentRotation(ctx, ten.ID); r.ID != rot.ID || r.Step != store.StepCutover {
		t.Fatalf("rotation = %+v, want %s at cutover", r, rot.ID)
	}
	if im, _ := s.Import(ctx, "imp-3"); im.State != store.ImportApplied || im.Attempts != 1 || im.CredentialID != c.ID {
		t.Fatalf("import = %+v, want applied after one attempt", im)
	}
	// A refused stage commits nothing.
	if _, _, _, err := s.Stage(ctx, ten.ID, newCred("D")); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.StageAndCutover(ctx, ten.ID, newCred("E")); !errors.Is(err, store.ErrInvariant) {
		t.Fatalf("with a rotation unfinished: %v, want ErrInvariant", err)
	}
	mustHealthy(t, s)
}
