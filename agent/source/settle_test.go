package source

import (
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHalfWrittenContentWaitsForSettle(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, domain+".plist")
	clock := newFakeClock()
	const debounce, settle = 5 * time.Millisecond, 70 * time.Millisecond
	h := start(t, Config{Dir: dir, Clock: clock, Debounce: debounce, Settle: settle, Valid: completePlist})
	h.expectAbsent(path)
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
	clock.waitArmed(t, debounce)
	clock.Advance(debounce)
	h.expect(path, content(2))
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

	// Writes keep coming, but the window opened by the first one closes on
	// time and the file is read once, holding the latest content.
	writeAtomic(t, path, content(1))
	clock.waitArmed(t, debounce)
	clock.Advance(debounce / 2)
	events.waitRelevant(t, 1) // the rename of the first write
	writeAtomic(t, path, content(2))
	events.waitRelevant(t, 1) // the rename of the second, inside the window
	clock.Advance(debounce / 2)
	h.expect(path, content(2))
}
