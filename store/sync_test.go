package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/rekeyd/rekey/store"
)

func TestSyncPageStoresDevicesCoverageAndCursorTogether(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	ten, _ := addTenant(t, s, "A")
	devs := []store.Device{{Serial: "C02A"}, {Serial: "C02B"}}
	cov := []store.DeviceCoverage{{Serial: "C02A", Records: []store.Coverage{{ID: "cov-1", Serial: "C02A"}}}, {Serial: "C02B"}}
	if err := s.SyncPage(ctx, ten.ID, devs, cov, "page-2"); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Tenant(ctx, ten.ID)
	if got.SyncCursor != "page-2" {
		t.Fatalf("cursor %q, want page-2", got.SyncCursor)
	}
	d, c, _ := s.Counts(ctx, ten.ID)
	if d != 2 || c != 1 {
		t.Fatalf("counts %d devices %d coverage, want 2 and 1", d, c)
	}
	page, _, _ := s.Devices(ctx, ten.ID, "", 10)
	if page[0].CoverageState != "covered" || page[1].CoverageState != "none" {
		t.Fatalf("coverage states %q %q, want covered and none", page[0].CoverageState, page[1].CoverageState)
	}
	// Coverage for a device not in the store fails the whole page: neither
	// the devices nor the cursor move.
	bad := []store.DeviceCoverage{{Serial: "NOPE"}}
	if err := s.SyncPage(ctx, ten.ID, []store.Device{{Serial: "C02C"}}, bad, "page-3"); !errors.Is(err, store.ErrInvariant) {
		t.Fatalf("bad page: %v, want ErrInvariant", err)
	}
	got, _ = s.Tenant(ctx, ten.ID)
	d, _, _ = s.Counts(ctx, ten.ID)
	if got.SyncCursor != "page-2" || d != 2 {
		t.Fatalf("after a failed page: cursor %q, %d devices; want page-2 and 2", got.SyncCursor, d)
	}
}

func TestSetOriginMarksCredentialLocal(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	_, c := addTenant(t, s, "A")
	if err := s.SetOrigin(ctx, c.ID, store.OriginLocal); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Credential(ctx, c.ID); got.Origin != store.OriginLocal {
		t.Fatalf("origin %q, want local", got.Origin)
	}
	if err := s.SetOrigin(ctx, "cred_000000000000", store.OriginLocal); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown credential: %v", err)
	}
}
