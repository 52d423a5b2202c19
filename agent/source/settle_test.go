package source

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHalfWrittenContentWaitsForSettle(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, domain+".plist")
	clock := newFakeClock()
	const debounce, settle = 5 * time.Millisecond, 70 * time.Millisecond
	writeInPlace(t, path, content(0))
	h := start(t, Config{Dir: dir, Clock: clock, Debounce: debounce, Settle: settle, Valid: completePlist})
	h.expect(path, content(0))
	h.quiet()

	full := content(1)
	writeInPlace(t, path, full[:len(full)/2])
	clock.waitArmed(t, debounce)
	clock.Advance(debounce)
	clock.waitArmed(t, settle) // invalid: held back
	h.quiet()

	writeInPlace(t, path, full) // completed within Settle
	clock.waitArmed(t, debounce)
	clock.Advance(debounce)
	h.expect(path, full)

	clock.Advance(settle) // the settle re-read finds nothing new
	h.quiet()
	writeInPlace(t, path, content(2))
	clock.waitArmed(t, debounce)
	clock.Advance(debounce)
	h.expect(path, content(2))
}

func TestInvalidContentIsReportedAfterSettle(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, domain+".plist")
	writeInPlace(t, path, content(1))
	clock := newFakeClock()
	const debounce, settle = 5 * time.Millisecond, 70 * time.Millisecond
	h := start(t, Config{Dir: dir, Clock: clock, Debounce: debounce, Settle: settle, Valid: completePlist})
	h.expect(path, content(1))
	h.quiet()

	broken := []byte("<plist>EncryptedCredential-secret")
	writeInPlace(t, path, broken)
	clock.waitArmed(t, debounce)
	clock.Advance(debounce)
	clock.waitArmed(t, settle)
	h.quiet() // nothing yet

	clock.Advance(settle)
	s := h.next()
	if s.Path != path || !s.Present || s.Hash != hashOf(broken) || !errors.Is(s.Err, ErrInvalid) {
		t.Fatalf("got %s, want present, invalid, hash of the broken content", describe(s))
	}
	if strings.Contains(s.Err.Error(), "secret") {
		t.Fatalf("error %q quotes the content", s.Err)
	}
	h.quiet() // the end of the settle pass that reported it

	// The same broken content again is not news; the fix is.
	writeInPlace(t, path, broken)
	clock.waitArmed(t, debounce)
	clock.Advance(debounce)
	clock.waitArmed(t, settle)
	h.quiet()
	clock.Advance(settle)
	h.quiet()
	writeInPlace(t, path, content(2))
	h.want(h.nextAdvancing(clock, debounce), path, content(2))
}

func TestDebounceWindowDoesNotSlide(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, domain+".plist")
	clock := newFakeClock()
	const debounce = 10 * time.Millisecond
	events := newEventLog()
	h := start(t, Config{Dir: dir, Clock: clock, Debounce: debounce, Logger: slog.New(events)})
	h.expectAbsent(path)
	h.quiet()

	writeAtomic(t, path, content(1))
	h.expect(path, content(1)) // read at once: no window

	// Writes in place keep coming, but the window opened by the first one
	// closes on time and the file is read once, holding the latest content.
	writeInPlace(t, path, content(2))
	clock.waitArmed(t, debounce)
	clock.Advance(debounce / 2)
	events.waitRelevant(t, 1) // the write in place (truncation, then data)
	writeInPlace(t, path, content(3))
	events.waitRelevant(t, 1) // the second write, inside the window
	clock.Advance(debounce / 2)
	h.expect(path, content(3))
}

func TestHalfWrittenNewFileIsNotActedOn(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, domain+".plist")
	clock := newFakeClock()
	const debounce, settle = 5 * time.Millisecond, 70 * time.Millisecond
	h := start(t, Config{Dir: dir, Clock: clock, Debounce: debounce, Settle: settle, Valid: completePlist})
	h.expectAbsent(path)
	h.quiet()

	// Created in place: the create is read at once, finds half a payload,
	// and holds it back; the writes that follow wait for the window.
	full := content(1)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(full[:len(full)/2]); err != nil {
		t.Fatal(err)
	}
	clock.waitArmed(t, settle) // the leading read found it invalid
	clock.waitArmed(t, debounce)
	h.quiet()
	if _, err := f.Write(full[len(full)/2:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(debounce)
	h.expect(path, full)
	clock.Advance(settle)
	h.quiet() // the settle re-read finds nothing new
}

// TestInvalidContentThatChangedDuringSettleWaitsAgain: the Settle wait ends
// on other invalid content than it began with (a write landed while it ran,
// its event not yet handled): that content is still being written, so it
// is not reported, and a new wait begins; content that stayed the same for
// a whole wait is.
func TestInvalidContentThatChangedDuringSettleWaitsAgain(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, domain+".plist")
	writeInPlace(t, path, content(1))
	var mu sync.Mutex
	override := []byte(nil) // what Read returns instead of the file, when set
	read := func(p string) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		if override != nil {
			return override, nil
		}
		return os.ReadFile(p)
	}
	setRead := func(b []byte) {
		mu.Lock()
		defer mu.Unlock()
		override = b
	}
	clock := newFakeClock()
	const debounce, settle = 5 * time.Millisecond, 70 * time.Millisecond
	h := start(t, Config{Dir: dir, Clock: clock, Debounce: debounce, Settle: settle, Valid: completePlist, Read: read})
	h.expect(path, content(1))
	h.quiet()

	first := []byte("<plist>half")
	setRead(first)
	writeInPlace(t, path, first) // an event, so that the watcher reads
	clock.waitArmed(t, debounce)
	clock.Advance(debounce)
	clock.waitArmed(t, settle)
	h.quiet()

	second := []byte("<plist>half and more") // changed, with no event seen
	setRead(second)
	clock.Advance(settle)
	h.quiet()                  // the settle pass reported nothing
	clock.waitArmed(t, settle) // and waits again
	clock.Advance(settle)
	s := h.next()
	if s.Path != path || s.Hash != hashOf(second) || !errors.Is(s.Err, ErrInvalid) {
		t.Fatalf("got %s, want the second content reported invalid", describe(s))
	}
	h.quiet()
}
