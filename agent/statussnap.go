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

// changed notes that the status may differ now. It is called before an
// event is fanned out, so a client that saw the event and asks for the
// status gets one built after it: the next request rebuilds the snapshot,
// and the status loop does within statusFileWindow to rewrite the file.
func (a *Agent) changed() {
	a.statusGen.Add(1)
	kick(a.statusKick)
}

// snapshot returns the prepared status when no change happened since it
// was built: no SQLite, no encoding. Otherwise the caller waits for a
// build that started after the last change it could have seen: the one
// running, if it started late enough, or else the next, which the callers
// arriving meanwhile share (statusFlight).
func (a *Agent) snapshot(ctx context.Context) (*statusSnap, error) {
	want := a.statusGen.Load()
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
