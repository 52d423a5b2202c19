package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rekeyd/rekey/store"
)

// history makes a tenant with three cut-over rotations (one credential
// retired on the way) and imports in several states, the clock moving on
// between them.
func history(t *testing.T) (*store.Store, store.Tenant, *clock) {
	t.Helper()
	s, _, clk := openStore(t)
	ctx := context.Background()
	ten, _ := addTenant(t, s, "A")
	for i, name := range []string{"B", "C", "D"} {
		clk.Advance(time.Second)
		id := "imp-" + name
		if _, _, err := s.RecordImport(ctx, store.Import{ID: id, Hash: "h" + name}); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := s.StageAndCutover(ctx, ten.ID, withImport(newCred(name), id)); err != nil {
			t.Fatalf("rotation %d: %v", i, err)
		}
	}
	for _, im := range []store.Import{
		{ID: "wait-1", Hash: "w1", TenantID: ten.ID, State: store.ImportFailed},
		{ID: "wait-2", Hash: "w2", TenantID: ten.ID, State: store.ImportNeedsTarget},
		{ID: "gone", Hash: "g", State: store.ImportWithdrawn},
	} {
		clk.Advance(time.Second)
		if _, _, err := s.RecordImport(ctx, im); err != nil {
			t.Fatal(err)
		}
	}
	return s, ten, clk
}

func TestOverviewReadsOnlyWhatTheStatusShows(t *testing.T) {
	s, ten, _ := history(t)
	o, err := s.Overview(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Tenants) != 1 || o.Tenants[0].ID != ten.ID {
		t.Fatalf("tenants = %+v", o.Tenants)
	}
	if len(o.InUse) != 2 || o.InUse[0].Name != "C" || o.InUse[0].State != store.CredPrevious || o.InUse[1].Name != "D" || o.InUse[1].State != store.CredActive {
		t.Fatalf("credentials in use = %+v, want C previous and D active", o.InUse)
	}
	if len(o.Waiting) != 2 || o.Waiting[0].ID != "wait-1" || o.Waiting[1].ID != "wait-2" {
		t.Fatalf("waiting imports = %+v", o.Waiting)
	}
	if o.LastRotation == nil || o.LastRotation.ImportID != "imp-D" {
		t.Fatalf("last rotation = %+v, want the one of imp-D", o.LastRotation)
	}
	empty, _, _ := openStore(t)
	if o, err := empty.Overview(context.Background()); err != nil || o.LastRotation != nil || len(o.Tenants) != 0 {
		t.Fatalf("empty store: %+v, %v", o, err)
	}
}

func TestReadsForDecidingAnImport(t *testing.T) {
	s, ten, _ := history(t)
	ctx := context.Background()
	inUse, err := s.CredentialsInUse(ctx)
	if err != nil || len(inUse) != 2 {
		t.Fatalf("credentials in use: %+v, %v", inUse, err)
	}
	waiting, err := s.ImportsOf(ctx, ten.ID, store.ImportFailed, store.ImportPendingUnlock)
	if err != nil || len(waiting) != 1 || waiting[0].ID != "wait-1" {
		t.Fatalf("failed or pending imports of the tenant: %+v, %v", waiting, err)
	}
	b, err := s.Import(ctx, "imp-B")
	if err != nil {
		t.Fatal(err)
	}
	if newer, err := s.NewerApplied(ctx, ten.ID, b.CreatedAt, b.ID); err != nil || newer.ID != "imp-C" {
		t.Fatalf("applied after imp-B: %+v, %v; want imp-C", newer, err)
	}
	d, _ := s.Import(ctx, "imp-D")
	if _, err := s.NewerApplied(ctx, ten.ID, d.CreatedAt, d.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("applied after the last one: %v, want ErrNotFound", err)
	}
}

func TestWithdrawCandidatesAreWaitingOrStillManaged(t *testing.T) {
	s, _, _ := history(t) // imp-B, C, D applied (source ""), wait-1, wait-2 waiting, gone withdrawn
	ctx := context.Background()
	d, _ := s.Import(ctx, "imp-D")
	if err := s.SetOrigin(ctx, d.CredentialID, store.OriginLocal); err != nil {
		t.Fatal(err)
	}
	got, err := s.WithdrawCandidates(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, im := range got {
		ids = append(ids, im.ID)
	}
	want := []string{"imp-B", "imp-C", "wait-1", "wait-2"} // imp-D's credential is local now
	if len(ids) != len(want) {
		t.Fatalf("candidates %v, want %v", ids, want)
	}
	for i := range want {
		if ids[i] != want[i] {
			t.Fatalf("candidates %v, want %v", ids, want)
		}
	}
	if other, err := s.WithdrawCandidates(ctx, "/elsewhere.plist"); err != nil || len(other) != 0 {
		t.Fatalf("another source: %v, %v", other, err)
	}
}
