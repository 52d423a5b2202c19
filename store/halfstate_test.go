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
	if _, err := s.Confirm(t.Context(), ten.ID); err != nil {
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
