package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rekeyd/rekey/store"
)

func TestRecordImportLoggedWritesItsEventsInTheSameTransaction(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	read := store.Event{Kind: store.EvSourceRead, Message: "payload read: 1 entries"}
	im, evs, err := s.RecordImportLogged(ctx, store.Import{ID: "imp-1", Hash: "h1", Name: "Main"}, read)
	if err != nil {
		t.Fatal(err)
	}
	if im.State != store.ImportPendingUnlock || len(evs) != 2 || evs[0].Kind != store.EvSourceRead ||
		evs[1].Kind != store.EvImportRecorded || evs[1].ImportID != "imp-1" || evs[1].Seq != evs[0].Seq+1 {
		t.Fatalf("import %+v, events %+v", im, evs)
	}
	again, evs2, err := s.RecordImportLogged(ctx, store.Import{ID: "imp-1", Hash: "h1", Name: "Main"})
	if err != nil || again.ID != "imp-1" || len(evs2) != 0 {
		t.Fatalf("known import: %+v, events %+v, %v; want the stored import and no event", again, evs2, err)
	}
	// A conflict writes nothing, not even the events that led to it.
	if _, evs3, err := s.RecordImportLogged(ctx, store.Import{ID: "imp-1", Hash: "other"}, read); !errors.Is(err, store.ErrImportConflict) || evs3 != nil {
		t.Fatalf("other hash: %+v, %v, want ErrImportConflict", evs3, err)
	}
	all, _ := s.Events(ctx, 0, 0)
	if len(all) != 2 || all[1].Seq != evs[1].Seq {
		t.Fatalf("events = %+v, want source.read and import.recorded", all)
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
	check := store.Event{Kind: store.EvAuthCheck, Message: "auth check: accepted"}
	evs, err := s.ValidateAndCutover(ctx, rot.ID, check)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 4 || evs[0].Kind != store.EvAuthCheck || evs[1].Kind != store.EvRotationValidated ||
		evs[2].Kind != store.EvRotationCutover || evs[3].Kind != store.EvImportState ||
		evs[3].Fields["state"] != string(store.ImportApplied) || evs[3].Seq != evs[0].Seq+3 {
		t.Fatalf("events %+v", evs)
	}
	want := map[string]store.CredState{old.ID: store.CredPrevious, pending.ID: store.CredActive}
	if diff := cmp.Diff(want, states(t, s, ten.ID)); diff != "" {
		t.Fatalf("states (-want +got):\n%s", diff)
	}
	if im, _ := s.Import(ctx, "imp-2"); im.State != store.ImportApplied {
		t.Fatalf("import = %+v, want applied", im)
	}
	if _, err := s.ValidateAndCutover(ctx, rot.ID); !errors.Is(err, store.ErrState) {
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
	before, _ := s.Events(ctx, 0, 0)
	if _, err := s.ValidateAndCutover(ctx, rot.ID, store.Event{Kind: store.EvAuthCheck, Message: "auth check: accepted"}); !errors.Is(err, store.ErrState) {
		t.Fatalf("cut-over after a rollback: %v, want ErrState", err)
	}
	if after, _ := s.Events(ctx, 0, 0); len(after) != len(before) {
		t.Fatalf("a refused cut-over wrote %d events", len(after)-len(before))
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
	if diff := cmp.Diff([]store.EventKind{store.EvRotationStaged, store.EvRotationValidated, store.EvRotationCutover, store.EvImportState}, kinds); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	after, _ := s.Events(ctx, 0, 0)
	if len(after) != len(before)+4 {
		t.Fatalf("%d events written, want 4", len(after)-len(before))
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

func TestJoinedCutoverLeavesTheRetiredKeyToFinishWipes(t *testing.T) {
	s, dir, _ := openStore(t)
	ctx := context.Background()
	ten, first := addTenant(t, s, "Acme")
	firstBlob := sealedBlob(t, s, first.ID)
	if _, _, _, err := s.StageAndCutover(ctx, ten.ID, newCred("Acme 2")); err != nil {
		t.Fatal(err)
	}
	if !s.Checkpointed() {
		t.Fatal("a cut-over that retired nothing owes a checkpoint")
	}
	// The second cut-over retires the first credential, still previous.
	rot, _, _, err := s.Stage(ctx, ten.ID, newCred("Acme 3"))
	if err != nil {
		t.Fatal(err)
	}
	evs, err := s.ValidateAndCutover(ctx, rot.ID)
	if err != nil || evs[len(evs)-1].Fields["retired"] != first.ID {
		t.Fatalf("cut-over: %+v, %v; want %s retired", evs, err, first.ID)
	}
	if s.Checkpointed() {
		t.Fatal("the retired key's checkpoint is not owed after a joined cut-over")
	}
	s.FinishWipes(ctx)
	if !s.Checkpointed() {
		t.Fatal("FinishWipes left the checkpoint owed")
	}
	noBlobOnDisk(t, dir, "FinishWipes", firstBlob)
}

func TestSetOriginLoggedWritesItsEventWithTheChange(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	ten, c := addTenant(t, s, "Acme")
	ev, err := s.SetOriginLogged(ctx, c.ID, store.OriginLocal, store.Event{Kind: store.EvCredentialReleased, TenantID: ten.ID,
		CredentialID: c.ID, Message: "released"})
	if err != nil || ev.Seq == 0 || ev.Kind != store.EvCredentialReleased {
		t.Fatalf("event %+v, %v", ev, err)
	}
	if got, _ := s.Credential(ctx, c.ID); got.Origin != store.OriginLocal {
		t.Fatalf("origin = %s, want local", got.Origin)
	}
	before, _ := s.Events(ctx, 0, 0)
	if _, err := s.SetOriginLogged(ctx, "cred_nope", store.OriginLocal, store.Event{Kind: store.EvCredentialReleased, Message: "x"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown credential: %v, want ErrNotFound", err)
	}
	if after, _ := s.Events(ctx, 0, 0); len(after) != len(before) {
		t.Fatal("a refused change of origin wrote its event")
	}
}
