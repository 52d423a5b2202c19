package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/store"
)

var _ api.Backend = (*Agent)(nil)

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
		if ts.Freshness, err = a.st.CoverageFreshness(ctx, t.ID, a.cfg.Now().Add(-a.settings().SyncInterval)); err != nil {
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
	return &api.CredentialSummary{ID: c.ID, Name: c.Name, ClientID: c.ClientID, KeyID: c.KeyID, Since: c.ActivatedAt}
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

func (a *Agent) Credentials(ctx context.Context) ([]store.Credential, error) {
	return a.st.Credentials(ctx)
}
func (a *Agent) Tenants(ctx context.Context) ([]store.Tenant, error) { return a.st.Tenants(ctx) }
func (a *Agent) Imports(ctx context.Context) ([]store.Import, error) { return a.st.Imports(ctx) }
func (a *Agent) Import(ctx context.Context, id string) (store.Import, error) {
	return a.st.Import(ctx, id)
}
func (a *Agent) Rotations(ctx context.Context) ([]store.Rotation, error) { return a.st.Rotations(ctx) }

func (a *Agent) Devices(ctx context.Context, tenantID string, q store.DeviceQuery) ([]store.Device, string, error) {
	return a.st.ListDevices(ctx, tenantID, q)
}

// Unlock decrypts a waiting import with a UI's password and choice.
func (a *Agent) Unlock(ctx context.Context, id string, req api.UnlockRequest) (store.Import, error) {
	ctx = context.WithoutCancel(ctx) // a step once begun is finished
	a.mu.Lock()
	defer a.mu.Unlock()
	imp, err := a.st.Import(ctx, id)
	if err != nil {
		return imp, err
	}
	if a.waiting[id] == nil {
		return imp, fmt.Errorf("import %s is %s and its entry is not in the managed preferences: %w", id, imp.State, store.ErrState)
	}
	if req.Intent != "" && req.Intent != "add" && req.Intent != "update" {
		return imp, fmt.Errorf("%w: intent %q; use add or update", api.ErrInvalid, req.Intent)
	}
	if imp.State == store.ImportNeedsTarget && req.Intent == "" {
		return imp, api.ErrNeedsChoice
	}
	in := attemptInput{password: string(req.Password), intent: req.Intent, target: req.Target}
	err = a.attempt(ctx, id, in)
	in.password = ""
	switch {
	case errors.Is(err, ErrWrongPassword):
		return imp, api.ErrWrongPassword
	case errors.Is(err, ErrBadChoice):
		return imp, fmt.Errorf("%w: %v", api.ErrNeedsChoice, err)
	}
	if got, gerr := a.st.Import(ctx, id); gerr == nil {
		imp = got
	}
	if err != nil && imp.State != store.ImportFailed && imp.State != store.ImportPendingUnlock {
		return imp, err
	}
	if imp.State == store.ImportPendingUnlock {
		return imp, api.ErrPasswordRequired
	}
	return imp, nil
}

// Dismiss declines a waiting import.
func (a *Agent) Dismiss(ctx context.Context, id string) (store.Import, error) {
	ctx = context.WithoutCancel(ctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	imp, err := a.st.Import(ctx, id)
	if err != nil {
		return imp, err
	}
	switch imp.State {
	case store.ImportPendingUnlock, store.ImportNeedsTarget, store.ImportFailed, store.ImportWithdrawn:
	default:
		return imp, fmt.Errorf("import %s is %s: %w", id, imp.State, store.ErrState)
	}
	delete(a.waiting, id)
	a.finishImport(ctx, id, store.ImportDismissed, "declined from a UI", "")
	return a.st.Import(ctx, id)
}

// Rollback swaps a tenant's active and previous credentials back.
func (a *Agent) Rollback(ctx context.Context, tenantID string) error {
	ctx = context.WithoutCancel(ctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.st.Rollback(ctx, tenantID); err != nil {
		return err
	}
	rot, err := a.st.CurrentRotation(ctx, tenantID)
	if err != nil {
		return fmt.Errorf("read rolled-back rotation: %w", err)
	}
	a.announce(store.Event{Kind: EvRollback, TenantID: tenantID, RotationID: rot.ID, CredentialID: rot.FromCredentialID,
		Message: "rolled back: the previous credential is active again"})
	return nil
}

// Sync starts a background sync of the tenant.
func (a *Agent) Sync(ctx context.Context, tenantID string) error {
	if _, err := a.st.Tenant(ctx, tenantID); err != nil {
		return err
	}
	a.syncMu.Lock()
	busy := a.syncing[tenantID]
	a.syncMu.Unlock()
	if busy {
		return api.ErrBusy
	}
	go func() {
		if err := a.SyncTenant(a.bg, tenantID); err != nil {
			a.log.Debug("sync", "tenant", tenantID, "err", err)
		}
	}()
	return nil
}
