package store_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/store"
)

func TestOpenRefusesTheSealingKeyWithoutTheDatabase(t *testing.T) {
	s, dir, _ := openStore(t)
	addTenant(t, s, "Acme")
	s.Close()
	for _, name := range []string{store.DBFile, store.DBFile + "-wal", store.DBFile + "-shm"} {
		os.Remove(filepath.Join(dir, name))
	}
	_, err := store.Open(dir, store.Options{})
	if !errors.Is(err, store.ErrHalfState) || !strings.Contains(err.Error(), "restore rekey.db") {
		t.Fatalf("open without rekey.db: %v; want ErrHalfState saying how to restore", err)
	}
	if _, err := os.Stat(filepath.Join(dir, store.DBFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused open created rekey.db: %v", err)
	}
}

func TestOpenRefusesTheDatabaseWithoutTheSealingKey(t *testing.T) {
	s, dir, _ := openStore(t)
	ten, _ := addTenant(t, s, "Acme")
	r, _ := stageValidated(t, s, ten.ID, "Acme 2")
	if _, err := s.Cutover(t.Context(), r.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Confirm(t.Context(), ten.ID, r.ToCredentialID); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Remove(filepath.Join(dir, store.SealKeyFile)); err != nil {
		t.Fatal(err)
	}
	_, err := store.Open(dir, store.Options{})
	if !errors.Is(err, store.ErrHalfState) || !strings.Contains(err.Error(), "restore seal.key") {
		t.Fatalf("open without seal.key: %v; want ErrHalfState saying how to restore", err)
	}
	if _, err := os.Stat(filepath.Join(dir, store.SealKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused open created a new seal.key: %v", err)
	}
}

// TestOpenRefusesAnEmptyDatabaseBesideTheSealingKey: a 0-byte rekey.db is what
// SQLite would take for a new database; beside seal.key it means the old one
// was lost, so it is refused like a missing one, and left as it was.
func TestOpenRefusesAnEmptyDatabaseBesideTheSealingKey(t *testing.T) {
	s, dir, _ := openStore(t)
	addTenant(t, s, "Acme")
	s.Close()
	for _, name := range []string{store.DBFile + "-wal", store.DBFile + "-shm"} {
		os.Remove(filepath.Join(dir, name))
	}
	db := filepath.Join(dir, store.DBFile)
	if err := os.Truncate(db, 0); err != nil {
		t.Fatal(err)
	}
	_, err := store.Open(dir, store.Options{})
	if !errors.Is(err, store.ErrHalfState) || !strings.Contains(err.Error(), "empty") || !strings.Contains(err.Error(), "restore rekey.db") {
		t.Fatalf("open with a 0-byte rekey.db: %v; want ErrHalfState saying it is empty and how to restore", err)
	}
	if fi, err := os.Stat(db); err != nil || fi.Size() != 0 {
		t.Fatalf("a refused open changed rekey.db: %v %v", fi, err)
	}

	// Without the sealing key an empty file is a new database, as SQLite has it.
	if err := os.Remove(filepath.Join(dir, store.SealKeyFile)); err != nil {
		t.Fatal(err)
	}
	s2, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatalf("open a 0-byte rekey.db with no sealing key: %v", err)
	}
	s2.Close()
}
