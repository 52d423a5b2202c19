package agent

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/statusfile"
	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/store"
)

// Status is the whole picture: agent, source, tenants, waiting imports and
// the last rotation. It never holds secrets. It is served from the snapshot
// in memory (statussnap.go), rebuilt after each change; the answer is
// read-only.
func (a *Agent) Status(ctx context.Context) (api.Status, error) {
	s, err := a.snapshot(ctx)
	if err != nil {
		return api.Status{}, err
	}
	return s.st, nil
}

// StatusJSON is Status encoded as GET /v1/status answers it, encoded once
// per snapshot.
func (a *Agent) StatusJSON(ctx context.Context) ([]byte, error) {
	s, err := a.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return s.json, nil
}

// statusFlight lets the callers that need a status rebuilt and arrive
// while a build is running share the next build, which starts after all of
// them asked: every answer reflects every change its caller could have
// seen, and a crowd of pollers costs one build at a time instead of one
// each (and one SQLite connection each).
type statusFlight[T any] struct {
	build sync.Mutex // held for the one build running
	mu    sync.Mutex
	next  *statusCall[T] // not started yet: callers join it
}

type statusCall[T any] struct {
	done chan struct{}
	v    T
	err  error
}

func (f *statusFlight[T]) do(ctx context.Context, build func(context.Context) (T, error)) (T, error) {
	f.mu.Lock()
	c := f.next
	if c == nil {
		c = &statusCall[T]{done: make(chan struct{})}
		f.next = c
		go f.run(context.WithoutCancel(ctx), c, build) // shared: no one caller may cancel it
	}
	f.mu.Unlock()
	select {
	case <-c.done:
		return c.v, c.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// run waits for the running build to end, closes c to newcomers and builds.
func (f *statusFlight[T]) run(ctx context.Context, c *statusCall[T], build func(context.Context) (T, error)) {
	f.build.Lock()
	defer f.build.Unlock()
	f.mu.Lock()
	f.next = nil
	f.mu.Unlock()
	c.v, c.err = build(ctx)
	close(c.done)
}

// buildStatus reads the status from the store and the agent's state.
func (a *Agent) buildStatus(ctx context.Context) (api.Status, error) {
	st := api.Status{Agent: api.AgentInfo{Version: a.cfg.Version, PID: os.Getpid(), UID: euid(), Started: a.started}}
	st.Source = a.sourceInfo()
	o, err := a.st.Overview(ctx)
	if err != nil {
		return st, fmt.Errorf("read status: %w", err)
	}
	st.Tenants = make([]api.TenantStatus, 0, len(o.Tenants))
	for _, t := range o.Tenants {
		ts := api.TenantStatus{ID: t.ID, Name: t.Name, Scope: t.Scope, LastSync: t.LastSyncAt, LastSyncError: t.SyncError}
		for _, c := range o.InUse {
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
		ts.Devices, ts.Coverage = a.tenantCounts(t)
		if ts.Freshness, err = a.st.CoverageFreshness(ctx, t.ID, a.cfg.Now().Add(-a.syncs.settings().SyncInterval)); err != nil {
			return st, fmt.Errorf("read coverage freshness: %w", err)
		}
		st.Tenants = append(st.Tenants, ts)
	}
	st.PendingImports = o.Waiting
	if st.PendingImports == nil {
		st.PendingImports = []store.Import{}
	}
	st.LastRotation = o.LastRotation
	return st, nil
}

// tenantCounts is the tenant's device and coverage counts for the status:
// the one place the status reads them, from the tenant row's counters
// (store.TenantCounts, kept in the transaction that changes the rows).
func (a *Agent) tenantCounts(t store.Tenant) (devices, coverage int) {
	return t.Counts.Devices, t.Counts.Coverage
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
	a.changed()
}

// statusFileWindow is how long the status loop lets changes gather before
// it rebuilds the status and rewrites the file: a pushed update makes ten
// or so changes within milliseconds, and each rewrite costs fsyncs on the
// disk the store commits to.
const statusFileWindow = 100 * time.Millisecond

// statusLoop rewrites the status plist after changes, once per window of
// statusFileWindow that the first change opens, and once more on the way
// out. The status the API serves does not wait for it: a request after a
// change rebuilds it at once (statussnap.go).
func (a *Agent) statusLoop(ctx context.Context) {
	window := time.NewTimer(statusFileWindow)
	window.Stop()
	defer window.Stop()
	for {
		a.writeStatus(context.WithoutCancel(ctx))
		select {
		case <-ctx.Done():
			a.writeStatus(context.WithoutCancel(ctx))
			return
		case <-a.statusKick:
		}
		window.Reset(statusFileWindow)
		select {
		case <-ctx.Done():
			a.writeStatus(context.WithoutCancel(ctx))
			return
		case <-window.C:
		}
		select { // the write that follows covers changes made in the window
		case <-a.statusKick:
		default:
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
