package store_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rekeyd/rekey/store"
)

// fileBytes reads the database file, or nil when it is missing.
func fileBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return b
}

func TestOpenReadOnlyReadsAStoppedAgentsDatabaseWithoutWriting(t *testing.T) {
	s, dir, _ := openStore(t)
	ten, cred := addTenant(t, s, "A")
	s.Close()
	db := filepath.Join(dir, store.DBFile)
	before := fileBytes(t, db)

	ro, err := store.OpenReadOnly(dir, store.Options{})
	if err != nil {
		t.Fatalf("open read-only: %v", err)
	}
	probs, err := ro.Check(context.Background(), time.Hour)
	if err != nil || len(probs) != 0 {
		t.Fatalf("check: %v %+v", err, probs)
	}
	got, err := ro.Credential(context.Background(), cred.ID)
	if err != nil || got.TenantID != ten.ID {
		t.Fatalf("credential: %+v %v", got, err)
	}
	if _, err := ro.Key(context.Background(), cred.ID); !errors.Is(err, store.ErrReadOnly) {
		t.Errorf("key from a read-only store: %v, want ErrReadOnly", err)
	}
	if _, _, _, err := ro.AddCredential(context.Background(), newCred("B"), "B"); !errors.Is(err, store.ErrReadOnly) {
		t.Errorf("write to a read-only store: %v, want ErrReadOnly", err)
	}
	ro.Close()
	if !bytes.Equal(before, fileBytes(t, db)) {
		t.Error("the database file changed")
	}
	for _, side := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(db + side); err == nil {
			t.Errorf("the read-only open left a %s file", side)
		}
	}
}

func TestOpenReadOnlySeesARunningAgentsWrites(t *testing.T) {
	s, dir, _ := openStore(t)
	defer s.Close()
	addTenant(t, s, "A")
	ro, err := store.OpenReadOnly(dir, store.Options{})
	if err != nil {
		t.Fatalf("open read-only: %v", err)
	}
	defer ro.Close()
	addTenant(t, s, "B") // written while the reader is open
	ts, err := ro.Tenants(context.Background())
	if err != nil || len(ts) != 2 {
		t.Fatalf("tenants: %d %v", len(ts), err)
	}
}

func TestOpenReadOnlyRefusesWithoutTouching(t *testing.T) {
	cases := map[string]struct {
		write func(t *testing.T, dir string)
		want  error
	}{
		"missing folder": {func(t *testing.T, dir string) {}, store.ErrNoDatabase},
		"missing file":   {func(t *testing.T, dir string) { os.MkdirAll(dir, 0o700) }, store.ErrNoDatabase},
		"empty file": {func(t *testing.T, dir string) {
			os.MkdirAll(dir, 0o700)
			os.WriteFile(filepath.Join(dir, store.DBFile), nil, 0o600)
		}, store.ErrNotDatabase},
		"text file": {func(t *testing.T, dir string) {
			os.MkdirAll(dir, 0o700)
			os.WriteFile(filepath.Join(dir, store.DBFile), []byte(strings.Repeat("not a database\n", 40)), 0o600)
		}, store.ErrNotDatabase},
		"newer schema": {func(t *testing.T, dir string) {
			s, err := store.Open(dir, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			db, err := sql.Open("sqlite", filepath.Join(dir, store.DBFile))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(`PRAGMA journal_mode = DELETE; PRAGMA user_version = 999`); err != nil {
				t.Fatal(err)
			}
		}, store.ErrNewerSchema},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			c.write(t, dir)
			db := filepath.Join(dir, store.DBFile)
			before := fileBytes(t, db)
			_, err := store.OpenReadOnly(dir, store.Options{})
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if !bytes.Equal(before, fileBytes(t, db)) {
				t.Error("the refused file changed")
			}
			if _, err := os.Stat(filepath.Join(dir, store.SealKeyFile)); err == nil && name != "newer schema" {
				t.Error("OpenReadOnly created a sealing key")
			}
			if _, err := os.Stat(dir); name == "missing folder" && err == nil {
				t.Error("OpenReadOnly created the state folder")
			}
		})
	}
}

// After a crash the WAL still holds committed transactions: a read-only open
// must see them (it reads through the WAL, not the bare file).
func TestOpenReadOnlyAfterACrashReadsTheWAL(t *testing.T) {
	s, dir, _ := openStore(t)
	defer s.Close()
	addTenant(t, s, "A")
	addTenant(t, s, "B")
	crashed := t.TempDir() // a copy of the files as a power loss leaves them
	for _, name := range []string{store.DBFile, store.DBFile + "-wal", store.DBFile + "-shm", store.SealKeyFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crashed, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ro, err := store.OpenReadOnly(crashed, store.Options{})
	if err != nil {
		t.Fatalf("open read-only: %v", err)
	}
	defer ro.Close()
	ts, err := ro.Tenants(context.Background())
	if err != nil || len(ts) != 2 {
		t.Fatalf("tenants after the crash: %d %v, want 2", len(ts), err)
	}
	if probs, err := ro.Check(context.Background(), time.Hour); err != nil || len(probs) != 0 {
		t.Fatalf("check: %v %+v", err, probs)
	}
}
