package source

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestOverflowTriggersRescan fills the kernel's inotify queue so that the
// payload's own event is dropped; only the rescan on ErrEventOverflow can
// then report the change (the periodic rescan is an hour away).
func TestOverflowTriggersRescan(t *testing.T) {
	raw, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events")
	if err != nil {
		t.Fatal(err)
	}
	limit, err := strconv.Atoi(string(bytes.TrimSpace(raw)))
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, domain+".plist")
	writeAtomic(t, path, content(1))
	// The gate holds the watcher inside a read (after reading) so that
	// the kernel queue fills up behind it.
	gate := struct{ on, held, release chan struct{} }{
		make(chan struct{}, 1), make(chan struct{}), make(chan struct{}),
	}
	read := func(p string) ([]byte, error) {
		data, err := os.ReadFile(p)
		select {
		case <-gate.on:
			gate.held <- struct{}{}
			<-gate.release
		default:
		}
		return data, err
	}
	h := start(t, Config{Dir: dir, Read: read})
	h.expect(path, content(1))
	h.quiet()

	gate.on <- struct{}{}
	h.w.Rescan()
	<-gate.held
	// Alternate two files so the kernel cannot merge repeated events.
	a, b := openNoise(t, dir, "a"), openNoise(t, dir, "b")
	for i := 0; i < limit+1000; i++ {
		f := a
		if i%2 == 1 {
			f = b
		}
		if _, err := f.Write([]byte{'x'}); err != nil {
			t.Fatal(err)
		}
	}
	writeAtomic(t, path, content(2)) // its events are lost
	close(gate.release)
	h.quiet() // the rescan that held the gate
	h.expect(path, content(2))
}

func openNoise(tb testing.TB, dir, name string) *os.File {
	tb.Helper()
	f, err := os.Create(filepath.Join(dir, "com.apple.noise."+name+".plist"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}
