package agent

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"testing"
	"time"

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

// newSnapAgent is an agent on a fresh state folder, not running.
func newSnapAgent(t *testing.T) *Agent {
	t.Helper()
	dir := t.TempDir()
	a, err := New(Config{StateDir: filepath.Join(dir, "state"), PrefsDir: filepath.Join(dir, "prefs"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.st.Close() })
	return a
}

// newPolledAgent is newSnapAgent once someone asked for its status.
func newPolledAgent(t *testing.T) *Agent {
	t.Helper()
	a := newSnapAgent(t)
	if _, err := a.snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a
}

// recordWaiting records an import that waits for its password: the status
// lists it among the pending imports.
func recordWaiting(t *testing.T, a *Agent, id string) {
	t.Helper()
	if _, _, err := a.st.RecordImport(context.Background(), store.Import{ID: id, Hash: "h-" + id, Source: "test"}); err != nil {
		t.Fatal(err)
	}
}

func pendingIDs(s *statusSnap) []string {
	var ids []string
	for _, im := range s.st.PendingImports {
		ids = append(ids, im.ID)
	}
	return ids
}

func TestWhileTheStatusIsPolledAChangeIsBuiltBeforeItIsKnown(t *testing.T) {
	a, ctx := newPolledAgent(t), context.Background()
	recordWaiting(t, a, "imp-1")
	a.changed()
	// The build ran in changed: the next caller answers from memory, even
	// with the store closed, and sees the change.
	if err := a.st.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := a.snapshot(ctx)
	if err != nil {
		t.Fatalf("status after a change while polled: %v; want the snapshot changed built", err)
	}
	if ids := pendingIDs(s); len(ids) != 1 || ids[0] != "imp-1" {
		t.Fatalf("pending imports %v; want [imp-1]", ids)
	}
}

func TestWithNoOneAskingAChangeBuildsNothing(t *testing.T) {
	a, ctx := newPolledAgent(t), context.Background()
	recordWaiting(t, a, "imp-1")
	a.changed() // asked since the last build: builds
	built := a.snap.Load()
	recordWaiting(t, a, "imp-2")
	a.changed() // no one asked since: the next caller builds
	if a.snap.Load() != built {
		t.Fatal("a change no one asked about was built")
	}
	s, err := a.snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ids := pendingIDs(s); len(ids) != 2 {
		t.Fatalf("pending imports %v; want both", ids)
	}
}

func TestProgressIsBuiltBesideTheSyncAndShownWhenBuilt(t *testing.T) {
	a, ctx := newPolledAgent(t), context.Background()
	// Hold the builds: progressed must return while its build waits.
	a.status.build.Lock()
	recordWaiting(t, a, "imp-1")
	a.progressed()
	if shown, gen := a.shownGen.Load(), a.statusGen.Load(); shown >= gen {
		t.Fatalf("progress shown (%d) before its build (change %d)", shown, gen)
	}
	old, err := a.snapshot(ctx)
	if err != nil || len(old.st.PendingImports) != 0 {
		t.Fatalf("status while the build waits: %v, %v; want the one before the change", old, err)
	}
	a.status.build.Unlock()
	for a.shownGen.Load() < a.statusGen.Load() {
		runtime.Gosched() // the build runs on its own goroutine
	}
	if err := a.st.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := a.snapshot(ctx)
	if err != nil || len(pendingIDs(s)) != 1 {
		t.Fatalf("status once the progress is shown: %v, %v; want the build it made", s, err)
	}
}

func TestAChangeUnderTheSyncersLockBuildsTheStatus(t *testing.T) {
	a := newSnapAgent(t)
	ctx := context.Background()
	// A tenant: its status reads the sync settings.
	if _, _, _, err := a.st.AddCredential(ctx, localCred(t, "Acme", ""), "Acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	// A sync publishes the event that ends it while it holds the syncer's
	// lock; the build reads the syncer's settings.
	done := make(chan struct{})
	go func() {
		a.syncs.mu.Lock()
		defer a.syncs.mu.Unlock()
		a.changed()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a change made under the syncer's lock never finished its build")
	}
}

func TestOneTransactionsEventsShareOneBuildThatComesFirst(t *testing.T) {
	a := newPolledAgent(t)
	events, cancel := a.hub.Subscribe(10)
	defer cancel()
	recordWaiting(t, a, "imp-1")
	before, built := a.statusGen.Load(), a.snap.Load()
	a.announceAll([]store.Event{{Kind: store.EvRotationStaged}, {}, {Kind: store.EvRotationCutover}})
	if n := a.statusGen.Load() - before; n != 1 {
		t.Fatalf("%d changes for one transaction's events; want one build for all", n)
	}
	if a.snap.Load() == built {
		t.Fatal("no build before the events went out")
	}
	for _, want := range []store.EventKind{store.EvRotationStaged, store.EvRotationCutover} {
		if ev := <-events; ev.Kind != want {
			t.Fatalf("event %q; want %q (in order, the empty one skipped)", ev.Kind, want)
		}
	}
	if ids := pendingIDs(a.snap.Load()); len(ids) != 1 {
		t.Fatalf("pending imports %v in the build the events followed", ids)
	}
}
