package source

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestFolderDeletedAndRecreated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "prefs")
	path := filepath.Join(dir, domain+".plist")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, path, content(1))
	h := start(t, Config{Dir: dir})
	h.expect(path, content(1))
	for i := 2; i < 5; i++ {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		h.expectAbsent(path)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeAtomic(t, path, content(i))
		h.expect(path, content(i))
	}
	// The watch is on the new folder: a write in place is seen too.
	writeInPlace(t, path, content(9))
	h.expect(path, content(9))
}

func TestFolderCreatedLaterTwoLevelsDown(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a", "b")
	path := filepath.Join(dir, domain+".plist")
	h := start(t, Config{Dir: dir})
	h.expectAbsent(path)
	for i := 1; i < 4; i++ {
		if err := os.Mkdir(filepath.Join(root, "a"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeAtomic(t, path, content(i))
		h.expect(path, content(i))
		// And back up when the folders vanish again.
		if err := os.RemoveAll(filepath.Join(root, "a")); err != nil {
			t.Fatal(err)
		}
		h.expectAbsent(path)
	}
}

func TestFolderReplacedByRename(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "prefs")
	path := filepath.Join(dir, domain+".plist")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, path, content(1))
	h := start(t, Config{Dir: dir})
	h.expect(path, content(1))

	for i := 2; i < 5; i++ {
		staged := filepath.Join(root, "staged")
		if err := os.Mkdir(staged, 0o755); err != nil {
			t.Fatal(err)
		}
		writeAtomic(t, filepath.Join(staged, domain+".plist"), content(i))
		old := filepath.Join(root, "old")
		if err := os.Rename(dir, old); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(staged, dir); err != nil {
			t.Fatal(err)
		}
		h.until(path, content(i))

		// Writes in the old folder are not the payload any more...
		writeInPlace(t, filepath.Join(old, domain+".plist"), content(100+i))
		// ...writes in the new one are.
		writeInPlace(t, path, content(200+i))
		h.expect(path, content(200+i))
		if err := os.RemoveAll(old); err != nil {
			t.Fatal(err)
		}
	}
}

func TestUserFolders(t *testing.T) {
	dir := t.TempDir()
	machine := filepath.Join(dir, domain+".plist")
	alice := filepath.Join(dir, "alice", domain+".plist")
	bob := filepath.Join(dir, "bob", domain+".plist")
	if err := os.Mkdir(filepath.Join(dir, "alice"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "carol"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, alice, content(1))
	h := start(t, Config{Dir: dir, UserPrefs: true})
	// The machine file is reported absent; carol, without a file, is not.
	h.expectAbsent(machine)
	if s := h.expect(alice, content(1)); s.User != "alice" {
		t.Fatalf("User = %q, want alice", s.User)
	}

	if err := os.Mkdir(filepath.Join(dir, "bob"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, bob, content(2))
	if s := h.expect(bob, content(2)); s.User != "bob" {
		t.Fatalf("User = %q, want bob", s.User)
	}
	writeInPlace(t, alice, content(3))
	h.expect(alice, content(3))

	if err := os.RemoveAll(filepath.Join(dir, "alice")); err != nil {
		t.Fatal(err)
	}
	s := h.next()
	if s.Path != alice || s.User != "alice" || s.Present {
		t.Fatalf("got %s, want alice's file absent", describe(s))
	}
	writeAtomic(t, machine, content(4))
	h.expect(machine, content(4))
}

func TestUserFoldersIgnoredWithoutUserPrefs(t *testing.T) {
	dir := t.TempDir()
	machine := filepath.Join(dir, domain+".plist")
	if err := os.Mkdir(filepath.Join(dir, "alice"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, filepath.Join(dir, "alice", domain+".plist"), content(1))
	h := start(t, Config{Dir: dir})
	h.expectAbsent(machine)
	writeAtomic(t, machine, content(2))
	h.expect(machine, content(2))
}

func TestRescanFindsChangesWithoutEvents(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, domain+".plist")
	writeAtomic(t, path, content(1))
	h := start(t, Config{Dir: dir})
	h.expect(path, content(1))
	h.quiet()

	// Lose the watch the way an overflow or a kernel hiccup would.
	if err := h.w.fw.Remove(dir); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, path, content(2))
	h.w.Rescan()
	h.expect(path, content(2))
	// The rescan put the watch back: events flow again.
	writeAtomic(t, path, content(3))
	h.expect(path, content(3))
}

func TestPeriodicRescan(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, domain+".plist")
	writeAtomic(t, path, content(1))
	clock := newFakeClock()
	const rescan, debounce = time.Minute, 5 * time.Millisecond
	h := start(t, Config{Dir: dir, Clock: clock, Rescan: rescan, Debounce: debounce})
	clock.waitArmed(t, rescan)
	h.expect(path, content(1))
	h.quiet()

	if err := h.w.fw.Remove(dir); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, path, content(2))
	clock.Advance(rescan)
	h.expect(path, content(2))

	writeInPlace(t, path, content(3))
	clock.waitArmed(t, debounce)
	clock.Advance(debounce)
	h.expect(path, content(3))
}
