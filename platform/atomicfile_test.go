package platform

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileAtomicReplacesContentAndMode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "status.plist")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != "new" {
		t.Fatalf("content %q, err %v", got, err)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

func TestWriteFileAtomicMissingFolderLeavesNothing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "missing", "f")
	if err := WriteFileAtomic(p, []byte("x"), 0o600); err == nil {
		t.Fatal("want an error for a missing folder")
	}
}

func TestPathsForKnownAndUnknownSystems(t *testing.T) {
	mac, err := PathsFor("darwin")
	if err != nil || mac.PrefsDir != "/Library/Managed Preferences" || !mac.UserPrefs || mac.AdminGroup != "admin" {
		t.Fatalf("darwin paths %+v, err %v", mac, err)
	}
	lin, err := PathsFor("linux")
	if err != nil || lin.PrefsDir != "/etc/rekey/managed" || lin.UserPrefs || lin.Socket != "/run/rekey/rekey.sock" {
		t.Fatalf("linux paths %+v, err %v", lin, err)
	}
	if _, err := PathsFor("plan9"); err == nil {
		t.Fatal("plan9 should be unsupported")
	}
}
