package agent

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/statusfile"
	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/store"
)

// Status is the whole picture: agent, source, tenants, waiting imports and
// the last rotation. It never holds secrets. Concurrent callers share builds
// (see statusFlight); the answer is read-only.
func (a *Agent) Status(ctx context.Context) (api.Status, error) {
	return a.status.do(ctx, a.buildStatus)
}

// statusFlight lets the callers of Status that arrive while a build is
// running share the next build, which starts after all of them asked: every
// answer reflects every change its caller could have seen, and a crowd of
// pollers costs one build at a time instead of one each (and one SQLite
// connection each).
type statusFlight struct {
	build sync.Mutex // held for the one build running
	mu    sync.Mutex
	next  *statusCall // not started yet: callers join it
}

type statusCall struct {
	done chan struct{}
	st   api.Status
	err  error
}

func (f *statusFlight) do(ctx context.Context, build func(context.Context) (api.Status, error)) (api.Status, error) {
	f.mu.Lock()
	c := f.next
	if c == nil {
		c = &statusCall{done: make(chan struct{})}
		f.next = c
		go f.run(context.WithoutCancel(ctx), c, build) // shared: no one caller may cancel it
	}
	f.mu.Unlock()
	select {
	case <-c.done:
		return c.st, c.err
	case <-ctx.Done():
		return api.Status{}, ctx.Err()
	}
}

// run waits for the running build to end, closes c to newcomers and builds.
func (f *statusFlight) run(ctx context.Context, c *statusCall, build func(context.Context) (api.Status, error)) {
	f.build.Lock()
	defer f.build.Unlock()
	f.mu.Lock()
	f.next = nil
	f.mu.Unlock()
	c.st, c.err = build(ctx)
	close(c.done)
}

// buildStatus reads the status from the store and the agent's state.
func (a *Agent) buildStatus(ctx context.Context) (api.Status, error) {
	st := api.Status{Agent: api.AgentInfo{Version: a.cfg.Version, PID: os.Getpid(), UID: euid(), Started: a.started}}
	st.Source = a.sourceInfo()
	tenants, err := a.st.Tenants(ctx)
	if err != nil {
		return st, fmt.Errorf("list tenants: %w", err)
	}
	creds, err := a.st.Credentials(ctx)
	if err != nil {
		return st, fmt.Errorf("list credentials: %w", err)
	}
	st.Tenants = make([]api.TenantStatus, 0, len(tenants))
	for _, t := range tenants {
		ts := api.TenantStatus{ID: t.ID, Name: t.Name, Scope: t.Scope, LastSync: t.LastSyncAt, LastSyncError: t.SyncError}
		for _, c := range creds {
			if c.TenantID != t.ID {
				continue
			}
			switch c.State {
			case store.CredActive:
				ts.Active = summary(c)
			case store.CredPrevious:
				ts.Previous = summary(c)
			}
		}
		ts.Counts = t.Counts
		ts.Devices, ts.Coverage = t.Counts.Devices, t.Counts.Coverage
		if ts.Freshness, err = a.st.CoverageFreshness(ctx, t.ID, a.cfg.Now().Add(-a.syncs.settings().SyncInterval)); err != nil {
			return st, fmt.Errorf("read coverage freshness: %w", err)
		}
		st.Tenants = append(st.Tenants, ts)
	}
	imps, err := a.st.Imports(ctx)
	if err != nil {
		return st, fmt.Errorf("list imports: %w", err)
	}
	st.PendingImports = []store.Import{}
	for _, imp := range imps {
		switch imp.State {
		case store.ImportPendingUnlock, store.ImportNeedsTarget, store.ImportFailed, store.ImportApplying:
			st.PendingImports = append(st.PendingImports, imp)
		}
	}
	rots, err := a.st.Rotations(ctx)
	if err != nil {
		return st, fmt.Errorf("list rotations: %w", err)
	}
	for i := range rots {
		if st.LastRotation == nil || rots[i].StartedAt.After(st.LastRotation.StartedAt) {
			st.LastRotation = &rots[i]
		}
	}
	return st, nil
}

func summary(c store.Credential) *api.CredentialSummary {
	return &api.CredentialSummary{ID: c.ID, Name: c.Name, ClientID: c.ClientID, KeyID: c.KeyID, Since: c.ActivatedAt, LastAuth: c.LastAuthAt}
}

// sourceInfo reports the machine-scope payload file. It does not take mu,
// which a rotation holds from decryption to confirmation (seconds when the
// store's writer is busy with a sync): status must answer meanwhile.
func (a *Agent) sourceInfo() api.SourceInfo {
	path := platform.PrefsFile(a.cfg.PrefsDir, a.cfg.Domain)
	if info, ok := a.srcInfo.Load(path); ok {
		return info.(api.SourceInfo)
	}
	return api.SourceInfo{Path: path}
}

// setSourceVerdict records what the last read of src found (errText "" for
// fine), in src and where sourceInfo reads it. Call it with mu held.
func (a *Agent) setSourceVerdict(src *sourceState, errText string) {
	src.LastErr = errText
	a.srcInfo.Store(src.Path, api.SourceInfo{Path: src.Path, LastRead: src.LastRead, LastError: errText})
}

// statusLoop rewrites the status plist after every change, coalescing
// bursts, and once more on the way out.
func (a *Agent) statusLoop(ctx context.Context) {
	for {
		a.writeStatus(context.WithoutCancel(ctx))
		select {
		case <-ctx.Done():
			a.writeStatus(context.WithoutCancel(ctx))
			return
		case <-a.statusKick:
		}
	}
}

func (a *Agent) writeStatus(ctx context.Context) {
	st, err := a.Status(ctx)
	if err != nil {
		a.log.Error("build status", "err", err)
		return
	}
	if err := statusfile.Write(a.cfg.StatusFile, st, a.cfg.Now()); err != nil {
		a.log.Error("write status file", "err", err)
	}
}
