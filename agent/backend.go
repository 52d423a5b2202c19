package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/store"
)

var (
	_ api.Backend        = (*Agent)(nil)
	_ api.StatusEncoder  = (*Agent)(nil)
	_ api.DeviceStreamer = (*Agent)(nil)
)

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

// StreamDevices hands a device page to the server in batches as the store
// reads it (api.DeviceStreamer).
func (a *Agent) StreamDevices(ctx context.Context, tenantID string, q store.DeviceQuery, emit func([]store.Device) error) (string, error) {
	return a.st.StreamDevices(ctx, tenantID, q, emit)
}

// Unlock decrypts a waiting import with a UI's password and choice. The API
// server has validated req: Intent is "", add or update.
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
	if imp.State == store.ImportNeedsTarget && req.Intent == "" {
		return imp, api.ErrNeedsChoice
	}
	in := attemptInput{password: string(req.Password), intent: req.Intent, target: req.Target}
	err = a.attempt(ctx, id, in)
	in.password = ""
	switch {
	case errors.Is(err, api.ErrWrongPassword):
		return imp, api.ErrWrongPassword
	case errors.Is(err, errBadChoice):
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
	if err := a.dropLeftovers(ctx, id, "", "its import was declined from a UI"); err != nil {
		return imp, err
	}
	a.setImport(ctx, id, store.ImportDismissed, "declined from a UI", "")
	return a.st.Import(ctx, id)
}

// Rollback swaps a tenant's active and previous credentials back.
func (a *Agent) Rollback(ctx context.Context, tenantID string) error {
	ctx = context.WithoutCancel(ctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	ev, err := a.st.Rollback(ctx, tenantID)
	if err != nil {
		return err
	}
	a.announce(ev)
	return nil
}

// Sync starts a background sync of the tenant.
func (a *Agent) Sync(ctx context.Context, tenantID string) error {
	if _, err := a.st.Tenant(ctx, tenantID); err != nil {
		return err
	}
	if a.syncs.busy(tenantID) {
		return api.ErrBusy
	}
	a.syncs.start(tenantID)
	return nil
}
