package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rekeyd/rekey/store"
)

func TestRecordImportIsIdempotentAndRefusesChangedContent(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	first, created, err := s.RecordImport(ctx, store.Import{ID: "i1", Hash: "aaa", Name: "Main", Source: "/prefs/x.plist"})
	if err != nil || !created {
		t.Fatalf("first record: created=%v err=%v", created, err)
	}
	if first.State != store.ImportPendingUnlock || first.Intent != "auto" {
		t.Fatalf("defaults not applied: %+v", first)
	}
	again, created, err := s.RecordImport(ctx, store.Import{ID: "i1", Hash: "aaa", Name: "renamed"})
	if err != nil || created || again.Name != "Main" {
		t.Fatalf("same hash: created=%v err=%v import=%+v", created, err, again)
	}
	if _, _, err := s.RecordImport(ctx, store.Import{ID: "i1", Hash: "bbb"}); !errors.Is(err, store.ErrImportConflict) {
		t.Fatalf("other hash: err = %v, want ErrImportConflict", err)
	}
	if _, _, err := s.RecordImport(ctx, store.Import{ID: "i2", Hash: "c", Intent: "replace"}); !errors.Is(err, store.ErrInvariant) {
		t.Fatalf("unknown intent: err = %v, want ErrInvariant", err)
	}
}

func TestUpdateImportChangesOnlyMutableFields(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	if _, _, err := s.RecordImport(ctx, store.Import{ID: "i1", Hash: "aaa"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.UpdateImport(ctx, "i1", func(im *store.Import) error {
		im.State, im.Reason, im.Attempts, im.Target = store.ImportNeedsTarget, "two credentials match", 2, "Main"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := s.Import(ctx, "i1")
	if diff := cmp.Diff(got, stored); diff != "" || stored.State != store.ImportNeedsTarget || stored.Attempts != 2 {
		t.Fatalf("stored import (-returned +stored):\n%s\n%+v", diff, stored)
	}
	if _, err := s.UpdateImport(ctx, "i1", func(im *store.Import) error { im.Hash = "zzz"; return nil }); !errors.Is(err, store.ErrInvariant) {
		t.Fatalf("hash change: err = %v, want ErrInvariant", err)
	}
	stop := errors.New("caller declined")
	if _, err := s.UpdateImport(ctx, "i1", func(*store.Import) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("fn error not returned: %v", err)
	}
	if _, err := s.UpdateImport(ctx, "nope", func(*store.Import) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown import: err = %v, want ErrNotFound", err)
	}
	if ims, _ := s.Imports(ctx); len(ims) != 1 || ims[0].Hash != "aaa" {
		t.Fatalf("imports = %+v", ims)
	}
}

func TestDevicesPageBySerialWithCoverage(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	ten, _ := addTenant(t, s, "A")
	var devs []store.Device
	for i := range 25 {
		devs = append(devs, store.Device{Serial: fmt.Sprintf("SN%03d", i), Model: "Mac"})
	}
	if err := s.UpsertDevices(ctx, ten.ID, devs); err != nil {
		t.Fatal(err)
	}
	cov := []store.DeviceCoverage{
		{Serial: "SN003", Records: []store.Coverage{{ID: "a", Status: "ACTIVE"}, {ID: "b", Status: "EXPIRED"}}},
		{Serial: "SN004"},
	}
	if err := s.UpsertCoverage(ctx, ten.ID, cov); err != nil {
		t.Fatal(err)
	}
	// A later full answer replaces the earlier records.
	if err := s.UpsertCoverage(ctx, ten.ID, []store.DeviceCoverage{{Serial: "SN003", Records: []store.Coverage{{ID: "b", Status: "ACTIVE"}}}}); err != nil {
		t.Fatal(err)
	}
	// Re-upserting a device without a coverage state keeps the stored one.
	if err := s.UpsertDevices(ctx, ten.ID, []store.Device{{Serial: "SN003", Model: "Mac15,3"}}); err != nil {
		t.Fatal(err)
	}
	var all []store.Device
	after := ""
	for pages := 0; ; pages++ {
		page, next, err := s.Devices(ctx, ten.ID, after, 10)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		after = next
	}
	if len(all) != 25 {
		t.Fatalf("paged %d devices, want 25", len(all))
	}
	d3, d4, d5 := all[3], all[4], all[5]
	if d3.Model != "Mac15,3" || d3.CoverageState != "active" || len(d3.Coverage) != 1 || d3.Coverage[0].ID != "b" {
		t.Fatalf("SN003 = %+v", d3)
	}
	if d4.CoverageState != "none" || d5.CoverageState != "unknown" {
		t.Fatalf("coverage states: SN004 %s, SN005 %s", d4.CoverageState, d5.CoverageState)
	}
	if nd, nc, err := s.Counts(ctx, ten.ID); err != nil || nd != 25 || nc != 1 {
		t.Fatalf("counts = %d, %d, %v", nd, nc, err)
	}
	if err := s.UpsertCoverage(ctx, ten.ID, []store.DeviceCoverage{{Serial: "GHOST"}}); !errors.Is(err, store.ErrInvariant) {
		t.Fatalf("coverage of unknown device: err = %v, want ErrInvariant", err)
	}
	if err := s.UpsertDevices(ctx, "ten_000000000000", devs[:1]); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown tenant: err = %v, want ErrNotFound", err)
	}
}

func TestSyncBookkeepingAuthAndEvents(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	ten, c := addTenant(t, s, "A")
	at := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	if err := s.SetSync(ctx, ten.ID, "cursor-2", at, "429 too many requests"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSync(ctx, ten.ID, "", time.Time{}, ""); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Tenant(ctx, ten.ID)
	if !got.LastSyncAt.Equal(at) || got.SyncCursor != "" || got.SyncError != "" {
		t.Fatalf("tenant sync fields = %+v", got)
	}
	if err := s.MarkAuth(ctx, c.ID, at); err != nil {
		t.Fatal(err)
	}
	if cc, _ := s.Credential(ctx, c.ID); !cc.LastAuthAt.Equal(at) {
		t.Fatalf("last auth = %v", cc.LastAuthAt)
	}
	if err := s.MarkAuth(ctx, "cred_000000000000", at); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown credential: %v", err)
	}
	e, err := s.AppendEvent(ctx, store.Event{Kind: "sync.done", TenantID: ten.ID, Message: "synced", Fields: map[string]string{"devices": "3"}})
	if err != nil || e.Seq != 2 {
		t.Fatalf("append: %+v %v", e, err)
	}
	evs, err := s.Events(ctx, 1, 10)
	if err != nil || len(evs) != 1 || evs[0].Fields["devices"] != "3" || evs[0].Seq != 2 {
		t.Fatalf("events after 1 = %+v, %v", evs, err)
	}
	if _, err := s.AppendEvent(ctx, store.Event{Message: "no kind"}); err == nil {
		t.Fatal("event without kind accepted")
	}
}

// TestWipedKeyLeavesNoBytesInTheFiles checks secure_delete: after Confirm and
// a checkpoint, the sealed key's bytes are nowhere in the database or WAL.
func TestWipedKeyLeavesNoBytesInTheFiles(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	ten, old := addTenant(t, s, "A")
	var sealed []byte
	if err := s.QueryRaw(ctx, &sealed, `SELECT sealed_key FROM credentials WHERE id = ?`, old.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.ExecRaw(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	if !inFiles(t, s.Path(), sealed) {
		t.Fatal("test is blind: sealed key not found in the files before the wipe")
	}
	rot, _ := stageValidated(t, s, ten.ID, "B")
	if _, err := s.Cutover(ctx, rot.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Confirm(ctx, ten.ID, rot.ToCredentialID); err != nil {
		t.Fatal(err)
	}
	if err := s.ExecRaw(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	if inFiles(t, s.Path(), sealed) {
		t.Fatal("wiped sealed key still present in the database files")
	}
}

func inFiles(t *testing.T, db string, needle []byte) bool {
	t.Helper()
	for _, p := range []string{db, db + "-wal"} {
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		// Any 16-byte window of the sealed blob counts: a freed cell keeps
		// most of its bytes unless secure_delete zeroes them.
		for i := 1; i+16 <= len(needle); i += 16 {
			if bytes.Contains(b, needle[i:i+16]) {
				return true
			}
		}
	}
	return false
}
