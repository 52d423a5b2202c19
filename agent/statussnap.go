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
// status gets one built after it. The status loop rebuilds the snapshot
// (and rewrites the status file) right away.
func (a *Agent) changed() {
	a.statusGen.Add(1)
	kick(a.statusKick)
}

// snapshot returns the prepared status when no change happened since it
// was built: no SQLite, no encoding. Otherwise the callers that arrive
// share one rebuild (statusFlight), which starts after all of them asked.
func (a *Agent) snapshot(ctx context.Context) (*statusSnap, error) {
	if s := a.snap.Load(); s != nil && s.gen == a.statusGen.Load() {
		return s, nil
	}
	return a.status.do(ctx, a.rebuild)
}

// rebuild builds the status from the store and keeps it unless a newer
// snapshot was kept meanwhile.
func (a *Agent) rebuild(ctx context.Context) (*statusSnap, error) {
	gen := a.statusGen.Load() // before reading: a change during the build makes it stale
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
