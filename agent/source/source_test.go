package source

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"relative folder", Config{Dir: "prefs", Domain: domain, Read: os.ReadFile}, "not an absolute path"},
		{"empty domain", Config{Dir: dir, Read: os.ReadFile}, "not a file name"},
		{"domain with slash", Config{Dir: dir, Domain: "../x", Read: os.ReadFile}, "not a file name"},
		{"no reader", Config{Dir: dir, Domain: domain}, "Read is nil"},
		{"negative settle", Config{Dir: dir, Domain: domain, Read: os.ReadFile, Settle: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New() error = %v, want ErrConfig mentioning %q", err, tt.want)
			}
		})
	}
}

func TestRunTwiceIsRefused(t *testing.T) {
	h := start(t, Config{Dir: t.TempDir()})
	h.next() // the first Run is going
	if err := h.w.Run(context.Background(), make(chan Snapshot)); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run = %v, want ErrRunning", err)
	}
}

func TestInitialScan(t *testing.T) {
	t.Run("present file is reported", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, domain+".plist")
		writeInPlace(t, path, content(1))
		h := start(t, Config{Dir: dir})
		s := h.expect(path, content(1))
		if s.User != "" {
			t.Errorf("User = %q, want machine scope", s.User)
		}
	})
	t.Run("absent file is reported absent", func(t *testing.T) {
		dir := t.TempDir()
		h := start(t, Config{Dir: dir})
		h.expectAbsent(filepath.Join(dir, domain+".plist"))
	})
	t.Run("missing folder is reported absent", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "no", "such")
		h := start(t, Config{Dir: dir})
		h.expectAbsent(filepath.Join(dir, domain+".plist"))
	})
	t.Run("unreadable file is reported with its error", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, domain+".plist")
		refused := errors.New("owner is not root")
		read := func(p string) ([]byte, error) { return nil, refused }
		h := start(t, Config{Dir: dir, Read: read})
		writeInPlace(t, path, content(1))
		s := h.next()
		if s.Path != path || !s.Present || !errors.Is(s.Err, refused) || s.Data != nil {
			t.Fatalf("got %s, want present with the read error", describe(s))
		}
	})
	t.Run("invalid file is reported after settle", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, domain+".plist")
		secret := []byte("<plist>ciphertext-AGE-xyz")
		writeInPlace(t, path, secret)
		h := start(t, Config{Dir: dir, Valid: completePlist})
		s := h.next()
		if !s.Present || !errors.Is(s.Err, ErrInvalid) || s.Hash != hashOf(secret) {
			t.Fatalf("got %s, want present, ErrInvalid, hash of the content", describe(s))
		}
		if strings.Contains(s.Err.Error(), "ciphertext") {
			t.Fatalf("error %q quotes the content", s.Err)
		}
	})
}

func TestCreateIsReported(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, domain+".plist")
	h := start(t, Config{Dir: dir})
	h.expectAbsent(path)
	writeAtomic(t, path, content(1))
	h.expect(path, content(1))
}

func TestWriteInPlaceIsReported(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, domain+".plist")
	writeInPlace(t, path, content(1))
	h := start(t, Config{Dir: dir, Valid: completePlist})
	h.expect(path, content(1))
	for i := 2; i < 12; i++ {
		writeInPlace(t, path, content(i))
		h.expect(path, content(i))
	}
}

func TestAtomicReplaceIsReported(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, domain+".plist")
	writeAtomic(t, path, content(1))
	h := start(t, Config{Dir: dir})
	h.expect(path, content(1))
	for i := 2; i < 12; i++ {
		writeAtomic(t, path, content(i))
		h.expect(path, content(i))
	}
}

func TestRelevantEvents(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "Managed Preferences")
	if err := os.MkdirAll(filepath.Join(dir, "alice"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeInPlace(t, filepath.Join(dir, "com.apple.other.plist"), content(1))
	if err := os.Mkdir(filepath.Join(dir, ".tmp-folder"), 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{Dir: dir, Domain: domain, Read: os.ReadFile, UserPrefs: true})
	if err != nil {
		t.Fatal(err)
	}
	w.users["bob"] = true // seen before, gone now
	tests := []struct {
		name string
		want bool
	}{
		{filepath.Join(dir, domain+".plist"), true},
		{filepath.Join(dir, "alice", domain+".plist"), true},
		{dir, true},
		{root, true},
		{filepath.Join(dir, "alice"), true},
		{filepath.Join(dir, "bob"), true},
		{filepath.Join(dir, "com.apple.other.plist"), false},
		{filepath.Join(dir, ".tmp-123"), false},
		{filepath.Join(dir, ".tmp-folder"), false},
		{filepath.Join(dir, "alice", "com.apple.other.plist"), false},
		{filepath.Join(root, "elsewhere"), false},
	}
	for _, tt := range tests {
		if got := w.relevant(tt.name); got != tt.want {
			t.Errorf("relevant(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestRemovalIsReportedOnce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, domain+".plist")
	writeAtomic(t, path, content(1))
	h := start(t, Config{Dir: dir})
	h.expect(path, content(1))
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	h.expectAbsent(path)
	// Another file coming and going in the folder must not repeat it.
	other := filepath.Join(dir, "com.apple.other.plist")
	writeAtomic(t, other, content(9))
	if err := os.Remove(other); err != nil {
		t.Fatal(err)
	}
	h.w.Rescan()
	h.quiet()
	writeAtomic(t, path, content(2))
	h.expect(path, content(2))
}

func TestIdenticalRewritesEmitNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, domain+".plist")
	writeAtomic(t, path, content(1))
	clock := newFakeClock()
	debounce := 5 * time.Millisecond
	h := start(t, Config{Dir: dir, Clock: clock, Debounce: debounce, Valid: completePlist})
	h.expect(path, content(1))
	h.quiet() // the initial scan is over
	for i := range 6 {
		if i%2 == 0 {
			writeAtomic(t, path, content(1)) // read at once
		} else {
			writeInPlace(t, path, content(1))
			clock.waitArmed(t, debounce)
			clock.Advance(debounce)
		}
		h.quiet() // the pass read the file and said nothing
	}
	writeAtomic(t, path, content(2))
	h.expect(path, content(2))
}

func TestRenameIsReadAtOnceAndWritesInPlaceWait(t *testing.T) {
	dir := t.TempDir()
	machine := filepath.Join(dir, domain+".plist")
	alice := filepath.Join(dir, "alice", domain+".plist")
	if err := os.Mkdir(filepath.Join(dir, "alice"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, alice, content(1))
	clock := newFakeClock()
	const debounce = 5 * time.Millisecond
	h := start(t, Config{Dir: dir, UserPrefs: true, Clock: clock, Debounce: debounce, Valid: completePlist})
	h.expectAbsent(machine)
	h.expect(alice, content(1))
	h.quiet()

	// The clock never moves: a file renamed into place needs no window.
	for i := 2; i < 6; i++ {
		writeAtomic(t, machine, content(i))
		h.expect(machine, content(i))
		writeAtomic(t, alice, content(i))
		if s := h.expect(alice, content(i)); s.User != "alice" {
			t.Fatalf("User = %q, want alice", s.User)
		}
	}
	// A write in place waits for the window; a rename after it does not,
	// so the machine file is reported first.
	writeInPlace(t, alice, content(10))
	clock.waitArmed(t, debounce)
	writeAtomic(t, machine, content(11))
	h.expect(machine, content(11))
	clock.Advance(debounce)
	h.expect(alice, content(10))
}

func TestBurstConvergesOnLastContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, domain+".plist")
	h := start(t, Config{Dir: dir, Debounce: 20 * time.Millisecond})
	h.expectAbsent(path)
	const writes = 1000
	for i := 1; i <= writes; i++ {
		writeAtomic(t, path, content(i))
	}
	last := hashOf(content(writes))
	snapshots := 0
	for {
		s := h.next()
		snapshots++
		if s.Path != path || !s.Present || s.Err != nil {
			t.Fatalf("got %s during the burst", describe(s))
		}
		if s.Hash == last {
			break
		}
	}
	t.Logf("%d writes gave %d snapshots", writes, snapshots)
	if snapshots > writes/4 {
		t.Fatalf("%d writes gave %d snapshots, want far fewer", writes, snapshots)
	}
	// Nothing stale follows the last content.
	h.w.Rescan()
	h.quiet()
}
