package agent

import (
	"context"
	"fmt"

	"github.com/rekeyd/rekey/agent/api"
)

// statusSnap is a prepared status: the answer and its JSON, built after
// change number gen.
type statusSnap struct {
	gen  uint64
	st   api.Status
	json []byte
}

// changed notes that the status may differ now, and kicks the status
// file. It is called after the change is committed and before it is made
// known (an event fanned out, an API call answered): see refresh.
func (a *Agent) changed() {
	a.refresh()
	kick(a.statusKick)
}

// refresh is changed without the status file. The change gets a new
// number, statusGen. When someone asked for the status since the last
// build, the snapshot is rebuilt here, on the goroutine that made the
// change, before the number becomes shownGen, which is what callers of
// snapshot compare with: they keep answering from the snapshot they have
// meanwhile (the change is not known to anyone yet) and never wait for a
// build while the status is being polled. When no one asked, nothing is
// built: the next caller builds. A failed build leaves the snapshot older
// than shownGen, so the next caller builds too.
func (a *Agent) refresh() {
	gen := a.statusGen.Add(1)
	if a.asked.Load() && a.asked.Swap(false) {
		a.status.do(context.Background(), a.rebuild) // its error is the next caller's to meet
	}
	a.show(gen)
}

// progressed is refresh for a sync's progress, which must not wait for the
// build: a page's writer (or a batch of coverage reads, under its lock)
// goes on at once, and the build runs beside it. Until it is done the
// status answers from the snapshot before the page, so the counts in the
// status follow a progress event within one build (docs/api.md); every
// other change is in the status before anyone hears of it.
func (a *Agent) progressed() {
	gen := a.statusGen.Add(1)
	if a.asked.Load() && a.asked.Swap(false) {
		go func() {
			a.status.do(context.Background(), a.rebuild)
			a.show(gen)
		}()
		return
	}
	a.show(gen)
}

// show makes change gen known to callers of snapshot.
func (a *Agent) show(gen uint64) {
	for {
		shown := a.shownGen.Load()
		if shown >= gen || a.shownGen.CompareAndSwap(shown, gen) {
			return
		}
	}
}

// snapshot returns the prepared status when no change was made known since
// it was built: no SQLite, no encoding. Otherwise the caller waits for a
// build that started after the last change it could have seen: the one
// running, if it started late enough, or else the next, which the callers
// arriving meanwhile share (statusFlight).
func (a *Agent) snapshot(ctx context.Context) (*statusSnap, error) {
	if !a.asked.Load() {
		a.asked.Store(true)
	}
	want := a.shownGen.Load()
	if s := a.snap.Load(); s != nil && s.gen >= want {
		return s, nil
	}
	if b := a.building.Load(); b != nil && b.gen >= want {
		select {
		case <-b.done:
			if b.err == nil {
				return b.s, nil
			}
			// It failed: build again rather than repeat its error.
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return a.status.do(ctx, a.rebuild)
}

// snapBuild is a rebuild in progress, started after change number gen.
type snapBuild struct {
	gen  uint64
	done chan struct{} // closed when s and err are set
	s    *statusSnap
	err  error
}

// rebuild is one build, made known to the callers of snapshot while it
// runs. statusFlight runs one at a time.
func (a *Agent) rebuild(ctx context.Context) (*statusSnap, error) {
	b := &snapBuild{gen: a.statusGen.Load(), done: make(chan struct{})} // before reading: a later change makes it stale
	a.building.Store(b)
	defer close(b.done)
	b.s, b.err = a.build(ctx, b.gen)
	return b.s, b.err
}

// build reads and encodes the status as of change gen and keeps it as the
// snapshot unless a newer one is kept already.
func (a *Agent) build(ctx context.Context, gen uint64) (*statusSnap, error) {
	st, err := a.buildStatus(ctx)
	if err != nil {
		return nil, err
	}
	body, err := api.EncodeStatus(st)
	if err != nil {
		return nil, fmt.Errorf("encode status: %w", err)
	}
	s := &statusSnap{gen: gen, st: st, json: body}
	for {
		old := a.snap.Load()
		if old != nil && old.gen > gen {
			return old, nil
		}
		if a.snap.CompareAndSwap(old, s) {
			return s, nil
		}
	}
}
