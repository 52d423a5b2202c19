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

	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/store"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	s, dir, _ := openStore(t)
	addTenant(t, s, "A") // a write, so that the WAL files exist
	for path, want := range map[string]os.FileMode{
		dir:                                     0o700,
		filepath.Join(dir, store.DBFile):        0o600,
		filepath.Join(dir, store.SealKeyFile):   0o600,
		filepath.Join(dir, store.DBFile+"-wal"): 0o600,
	} {
		if got := mode(t, path); got != want {
			t.Errorf("%s: mode %#o, want %#o", filepath.Base(path), got, want)
		}
	}
	if s.Path() != filepath.Join(dir, store.DBFile) {
		t.Errorf("Path() = %s", s.Path())
	}
	var v int
	if err := s.QueryRaw(context.Background(), &v, `PRAGMA user_version`); err != nil || v != store.SchemaVersion() {
		t.Errorf("user_version = %d (%v), want %d", v, err, store.SchemaVersion())
	}
	for pragma, want := range map[string]string{"journal_mode": "wal", "synchronous": "2", "foreign_keys": "1", "secure_delete": "1"} {
		var got string
		if err := s.QueryRaw(context.Background(), &got, "PRAGMA "+pragma); err != nil || got != want {
			t.Errorf("PRAGMA %s = %q (%v), want %q", pragma, got, err, want)
		}
	}
}

// TestOpenRefusesAStateFolderOthersMayWrite: the store checks its folder the
// way the agent does (platform.PrepareStateDir) and leaves a refused one as
// it was.
func TestOpenRefusesAStateFolderOthersMayWrite(t *testing.T) {
	s, dir, _ := openStore(t)
	s.Close()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	_, err := store.Open(dir, store.Options{})
	var te *platform.TrustError
	if !errors.As(err, &te) || te.Fix == "" {
		t.Fatalf("open in a world-writable folder: %v; want a TrustError with a fix", err)
	}
	if got := mode(t, dir); got != 0o777 {
		t.Fatalf("a refused open changed the folder's mode to %#o", got)
	}
}

func TestOpenNarrowsWideModesAndKeepsData(t *testing.T) {
	s, dir, _ := openStore(t)
	ten, _ := addTenant(t, s, "A")
	s.Close()
	db := filepath.Join(dir, store.DBFile)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(db, 0o644); err != nil {
		t.Fatal(err)
	}
	s2, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if mode(t, dir) != 0o700 || mode(t, db) != 0o600 {
		t.Fatalf("modes not narrowed: dir %#o, db %#o", mode(t, dir), mode(t, db))
	}
	if _, err := s2.Tenant(context.Background(), ten.ID); err != nil {
		t.Fatalf("data lost on reopen: %v", err)
	}
}

func TestOpenRefusesBadSealKey(t *testing.T) {
	for name, spoil := range map[string]func(path string) error{
		"group-readable":                func(p string) error { return os.Chmod(p, 0o640) },
		"wrong size":                    func(p string) error { return os.WriteFile(p, []byte("short"), 0o600) },
		"missing while keys are sealed": os.Remove,
		"a symlink": func(p string) error {
			if err := os.Rename(p, p+".real"); err != nil {
				return err
			}
			return os.Symlink(p+".real", p)
		},
	} {
		t.Run(name, func(t *testing.T) {
			s, dir, _ := openStore(t)
			addTenant(t, s, "A")
			s.Close()
			if err := spoil(filepath.Join(dir, store.SealKeyFile)); err != nil {
				t.Fatal(err)
			}
			_, err := store.Open(dir, store.Options{})
			if !errors.Is(err, store.ErrSealKey) {
				t.Fatalf("err = %v, want ErrSealKey", err)
			}
		})
	}
}

func TestReplacedSealKeyDoesNotOpenKeys(t *testing.T) {
	s, dir, _ := openStore(t)
	_, c := addTenant(t, s, "A")
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, store.SealKeyFile), bytes.Repeat([]byte{7}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.Key(context.Background(), c.ID); !errors.Is(err, store.ErrSealKey) {
		t.Fatalf("err = %v, want ErrSealKey", err)
	}
}

// refusedUntouched checks that Open fails with want and leaves the file byte-for-byte as it was.
func refusedUntouched(t *testing.T, dir string, want error) {
	t.Helper()
	db := filepath.Join(dir, store.DBFile)
	before, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(dir, store.Options{})
	if err == nil {
		s.Close()
		t.Fatalf("Open succeeded, want %v", want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	after, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("the refused file was modified")
	}
	for _, side := range []string{"-wal", "-journal"} {
		if _, err := os.Stat(db + side); err == nil {
			t.Errorf("Open left a %s file next to the refused database", side)
		}
	}
}

func TestOpenRefusesWhatIsNotARekeyDatabase(t *testing.T) {
	for name, write := range map[string]func(path string) error{
		"text file":  func(p string) error { return os.WriteFile(p, []byte(strings.Repeat("not a database\n", 40)), 0o600) },
		"short file": func(p string) error { return os.WriteFile(p, []byte("SQLite"), 0o600) },
		"another application's database": func(p string) error {
			db, err := sql.Open("sqlite", p)
			if err != nil {
				return err
			}
			defer db.Close()
			_, err = db.Exec(`CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep me')`)
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := write(filepath.Join(dir, store.DBFile)); err != nil {
				t.Fatal(err)
			}
			refusedUntouched(t, dir, store.ErrNotDatabase)
		})
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	s, dir, _ := openStore(t)
	addTenant(t, s, "A")
	s.Close()
	db, err := sql.Open("sqlite", filepath.Join(dir, store.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`PRAGMA journal_mode = DELETE; PRAGMA user_version = 999`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	refusedUntouched(t, dir, store.ErrNewerSchema)
}

// TestConcurrentOpensOfANewFolderAgree opens one new folder from several
// goroutines at once (the agent and a CLI racing at first start): every Open
// succeeds, the migrations run once, and all share one sealing key.
func TestConcurrentOpensOfANewFolderAgree(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	const n = 4
	stores := make([]*store.Store, n)
	errs := make([]error, n)
	done := make(chan int)
	for i := range n {
		go func() {
			stores[i], errs[i] = store.Open(dir, store.Options{})
			done <- i
		}()
	}
	for range n {
		<-done
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	_, c, _, err := stores[0].AddCredential(context.Background(), newCred("A"), "")
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range stores {
		if _, err := s.Key(context.Background(), c.ID); err != nil {
			t.Fatalf("store %d cannot open a key sealed by store 0: %v", i, err)
		}
	}
}
