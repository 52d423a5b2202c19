package store_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/store"
)

// A database deleted or renamed over while open must not swallow writes:
// SQLite in WAL mode would commit them into the unlinked file.
func TestWritesStopWhenTheDatabaseFileIsGone(t *testing.T) {
	for name, breakIt := range map[string]func(t *testing.T, db string){
		"deleted": func(t *testing.T, db string) { os.Remove(db) },
		"replaced": func(t *testing.T, db string) {
			other := filepath.Join(filepath.Dir(db), "other")
			if err := os.WriteFile(other, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(other, db); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			s, dir, _ := openStore(t)
			addTenant(t, s, "A")
			breakIt(t, filepath.Join(dir, store.DBFile))
			_, _, _, err := s.AddCredential(t.Context(), newCred("B"), "B")
			if !errors.Is(err, store.ErrDBMoved) || !strings.Contains(err.Error(), name) {
				t.Fatalf("write after the file was %s: %v, want ErrDBMoved", name, err)
			}
		})
	}
}
