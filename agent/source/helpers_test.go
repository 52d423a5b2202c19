package source

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

const (
	domain = "com.github.rekeyd.rekey"
	// wait bounds every wait on the watcher: generous, since the machine
	// is shared; a healthy run answers in milliseconds.
	wait = 20 * time.Second
)

// content is a small, complete stand-in for a payload plist.
func content(n int) []byte { return fmt.Appendf(nil, "<plist>%d</plist>\n", n) }

// completePlist is the tests' Valid: content cut short lacks the closing tag.
func completePlist(data []byte) error {
	if !bytes.HasSuffix(data, []byte("</plist>\n")) {
		return errors.New("plist ends early")
	}
	return nil
}

func hashOf(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// writeAtomic replaces path the way MDM agents do: temporary file in the
// same folder, then rename over the target.
func writeAtomic(tb testing.TB, path string, data []byte) {
	tb.Helper()
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		tb.Fatal(err)
	}
}

func writeInPlace(tb testing.TB, path string, data []byte) {
	tb.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// harness runs a Watcher in the background and reads what it reports.
type harness struct {
	tb    testing.TB
	w     *Watcher
	out   chan Snapshot
	scans chan struct{} // one value per finished pass over the files
}

// start runs a watcher on cfg with fast test timings unless cfg sets them.
func start(tb testing.TB, cfg Config) *harness {
	tb.Helper()
	if cfg.Domain == "" {
		cfg.Domain = domain
	}
	if cfg.Read == nil {
		cfg.Read = os.ReadFile
	}
	if cfg.Debounce == 0 {
		cfg.Debounce = 5 * time.Millisecond
	}
	if cfg.Settle == 0 {
		cfg.Settle = 50 * time.Millisecond
	}
	if cfg.Rescan == 0 {
		cfg.Rescan = time.Hour // tests of the rescan say so
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	w, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	h := &harness{tb: tb, w: w, out: make(chan Snapshot), scans: make(chan struct{}, 1024)}
	w.onScan = func() {
		select {
		case h.scans <- struct{}{}:
		default: // benchmarks never wait for passes
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, h.out) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(wait):
			tb.Error("Run did not return after cancel")
		}
	})
	return h
}

// next returns the next snapshot.
func (h *harness) next() Snapshot {
	h.tb.Helper()
	select {
	case s := <-h.out:
		return s
	case <-time.After(wait):
		h.tb.Fatalf("no snapshot within %v", wait)
		return Snapshot{}
	}
}

// expect fails unless the next snapshot is path holding data.
func (h *harness) expect(path string, data []byte) Snapshot {
	h.tb.Helper()
	return h.want(h.next(), path, data)
}

// want fails unless s is path holding data.
func (h *harness) want(s Snapshot, path string, data []byte) Snapshot {
	h.tb.Helper()
	if s.Path != path || !s.Present || s.Hash != hashOf(data) || !bytes.Equal(s.Data, data) || s.Err != nil {
		h.tb.Fatalf("got %s, want %s holding %q", describe(s), path, data)
	}
	return s
}

// nextAdvancing waits for the next snapshot, moving the clock on by d
// whenever a timer of d is pending. The events of one write in place can
// reach the watcher apart, the second after the window the first opened has
// closed and opening another, so a test cannot know how many windows a
// write opens, only that one of them reads it.
func (h *harness) nextAdvancing(c *fakeClock, d time.Duration) Snapshot {
	h.tb.Helper()
	deadline := time.After(wait)
	for {
		if c.armed(d) {
			c.Advance(d)
		}
		select {
		case s := <-h.out:
			return s
		case <-c.changed:
		case <-deadline:
			h.tb.Fatalf("no snapshot within %v", wait)
			return Snapshot{}
		}
	}
}

// expectAbsent fails unless the next snapshot says path is gone.
func (h *harness) expectAbsent(path string) {
	h.tb.Helper()
	s := h.next()
	if s.Path != path || s.Present || s.Hash != "" || s.Data != nil || s.Err != nil {
		h.tb.Fatalf("got %s, want %s absent", describe(s), path)
	}
}

// until waits for path holding data, allowing "absent" snapshots of path
// on the way (a folder swapped by two renames is briefly missing); any
// other snapshot fails.
func (h *harness) until(path string, data []byte) {
	h.tb.Helper()
	for {
		s := h.next()
		if s.Path == path && !s.Present && s.Err == nil {
			continue
		}
		if s.Path != path || !s.Present || s.Hash != hashOf(data) || s.Err != nil {
			h.tb.Fatalf("got %s, want %s holding %q", describe(s), path, data)
		}
		return
	}
}

// quiet waits for one finished pass over the files and fails if a
// snapshot comes first.
func (h *harness) quiet() {
	h.tb.Helper()
	select {
	case s := <-h.out:
		h.tb.Fatalf("unexpected snapshot %s", describe(s))
	case <-h.scans:
	case <-time.After(wait):
		h.tb.Fatalf("no pass over the files within %v", wait)
	}
}

func describe(s Snapshot) string {
	return fmt.Sprintf("{path %s user %q present %v data %q err %v}", s.Path, s.User, s.Present, s.Data, s.Err)
}

// fakeClock is a Clock the test moves by hand. A test learns that the
// watcher waits for something with waitArmed.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer
	changed chan struct{} // a timer or ticker was started
}

var _ Clock = (*fakeClock)(nil)

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1_800_000_000, 0), changed: make(chan struct{}, 1)}
}

type fakeTimer struct {
	c      chan time.Time
	d      time.Duration
	at     time.Time
	period time.Duration // 0 for a one-shot timer
	done   bool          // fired (one-shot) or stopped
	clock  *fakeClock
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) add(d, period time.Duration) *fakeTimer {
	c.mu.Lock()
	t := &fakeTimer{c: make(chan time.Time, 1), d: d, at: c.now.Add(d), period: period, clock: c}
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
	return t
}

func (c *fakeClock) NewTimer(d time.Duration) Timer   { return c.add(d, 0) }
func (c *fakeClock) NewTicker(d time.Duration) Ticker { return fakeTicker{c.add(d, d)} }

type fakeTicker struct{ *fakeTimer }

func (t fakeTicker) Stop() { t.fakeTimer.Stop() }

// Advance moves time on and fires what is due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		if t.done || t.at.After(c.now) {
			continue
		}
		select {
		case t.c <- c.now:
		default:
		}
		if t.period > 0 {
			t.at = t.at.Add(t.period)
		} else {
			t.done = true
		}
	}
}

// armed reports whether a timer or ticker of d is pending.
func (c *fakeClock) armed(d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.timers {
		if !t.done && t.d == d {
			return true
		}
	}
	return false
}

// waitArmed waits until a timer or ticker of d is pending: the watcher
// waits for it, and the next Advance by d makes it act.
func (c *fakeClock) waitArmed(tb testing.TB, d time.Duration) {
	tb.Helper()
	deadline := time.After(wait)
	for {
		if c.armed(d) {
			return
		}
		select {
		case <-c.changed:
		case <-deadline:
			tb.Fatalf("no timer of %v started within %v", d, wait)
		}
	}
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	was := !t.done
	t.done = true
	return was
}

// eventLog is a slog.Handler that passes on the relevant file events the
// watcher logs at debug level: a test learns that the watcher has seen an
// event, which nothing else shows while a debounce window is open.
type eventLog struct{ relevant chan string }

func newEventLog() *eventLog { return &eventLog{relevant: make(chan string, 1024)} }

func (l *eventLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *eventLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *eventLog) WithGroup(string) slog.Handler            { return l }

func (l *eventLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "file event" {
		return nil
	}
	var event string
	var rel bool
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "event":
			event = a.Value.String()
		case "relevant":
			rel = a.Value.Bool()
		}
		return true
	})
	if rel {
		l.relevant <- event
	}
	return nil
}

// waitRelevant waits for the watcher to take in n more relevant events.
func (l *eventLog) waitRelevant(tb testing.TB, n int) {
	tb.Helper()
	deadline := time.After(wait)
	for range n {
		select {
		case <-l.relevant:
		case <-deadline:
			tb.Fatalf("watcher saw no relevant file event within %v", wait)
		}
	}
}
