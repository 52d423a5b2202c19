package store_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/rekeyd/rekey/store"
)

// sealedBlob reads a credential's sealed key as stored.
func sealedBlob(t *testing.T, s *store.Store, credID string) []byte {
	t.Helper()
	var b []byte
	if err := s.QueryRaw(context.Background(), &b, `SELECT sealed_key FROM credentials WHERE id = ?`, credID); err != nil || len(b) < 32 {
		t.Fatalf("sealed key of %s: %d bytes, %v", credID, len(b), err)
	}
	return b
}

// noBlobOnDisk fails when any of the database's files holds blob (or a
// 32-byte stretch of it, in case a page split it).
func noBlobOnDisk(t *testing.T, dir, step string, blob []byte) {
	t.Helper()
	for _, name := range []string{store.DBFile, store.DBFile + "-wal", store.DBFile + "-shm"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+32 <= len(blob); i += 16 {
			if bytes.Contains(data, blob[i:i+32]) {
				t.Fatalf("after %s, %s still holds the wiped sealed key (bytes %d-%d of it)", step, name, i, i+32)
			}
		}
	}
}

func TestWipedKeysAreGoneFromTheDatabaseWALAndSHM(t *testing.T) {
	ctx := context.Background()
	s, dir, _ := openStore(t)
	ten, first := addTenant(t, s, "Acme")
	firstBlob := sealedBlob(t, s, first.ID)

	// fail: the pending credential's key is wiped.
	r, pending, _, err := s.Stage(ctx, ten.ID, newCred("Acme failed"))
	if err != nil {
		t.Fatal(err)
	}
	pendingBlob := sealedBlob(t, s, pending.ID)
	if _, err := s.FailRotation(ctx, r.ID, "auth check refused"); err != nil {
		t.Fatal(err)
	}
	noBlobOnDisk(t, dir, "fail", pendingBlob)

	// confirm: the previous credential's key is wiped.
	r, second := stageValidated(t, s, ten.ID, "Acme 2")
	secondBlob := sealedBlob(t, s, second.ID)
	if _, err := s.Cutover(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Confirm(ctx, ten.ID, second.ID); err != nil {
		t.Fatal(err)
	}
	noBlobOnDisk(t, dir, "confirm", firstBlob)

	// retire at cut-over: a rotation before the last was confirmed retires
	// the older previous credential.
	r, _ = stageValidated(t, s, ten.ID, "Acme 3")
	if _, err := s.Cutover(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	r, _ = stageValidated(t, s, ten.ID, "Acme 4")
	if _, err := s.Cutover(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	noBlobOnDisk(t, dir, "retire at cut-over", secondBlob)
	if !s.Checkpointed() {
		t.Fatal("a wipe's checkpoint is still owed")
	}
	mustHealthy(t, s)
}
