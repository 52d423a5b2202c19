package agent

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/rekeyd/rekey/store"
)

func TestStatusIsServedFromTheSnapshotUntilSomethingChanges(t *testing.T) {
	dir := t.TempDir()
	a, err := New(Config{StateDir: filepath.Join(dir, "state"), PrefsDir: filepath.Join(dir, "prefs"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := a.snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The store closed: only the snapshot in memory can answer now.
	if err := a.st.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := a.snapshot(ctx)
	if err != nil || again != first {
		t.Fatalf("unchanged status rebuilt: %p vs %p, %v", again, first, err)
	}
	body, err := a.StatusJSON(ctx)
	if err != nil || !bytes.Equal(body, first.json) {
		t.Fatalf("StatusJSON = %q, %v; want the snapshot's bytes", body, err)
	}
	st, err := a.Status(ctx)
	if err != nil || st.Agent.Started != first.st.Agent.Started {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	// A change makes the next caller rebuild, which needs the store.
	a.changed()
	if _, err := a.snapshot(ctx); err == nil {
		t.Fatal("status after a change answered from the old snapshot")
	}
}

func TestAFailedRebuildIsNotServedAgain(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	a, err := New(Config{StateDir: state, PrefsDir: filepath.Join(dir, "prefs"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := a.st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.snapshot(ctx); err == nil {
		t.Fatal("a status built on a closed store did not fail")
	}
	if a.st, err = store.Open(state, store.Options{}); err != nil { // the store is back
		t.Fatal(err)
	}
	t.Cleanup(func() { a.st.Close() })
	if s, err := a.snapshot(ctx); err != nil || s == nil {
		t.Fatalf("status once the store is back: %v, %v; want a new build, not the failed one", s, err)
	}
}
