package agent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// ErrSyncRunning: a sync of the tenant is already running.
var ErrSyncRunning = api.ErrBusy

// syncTick is how often the agent looks for tenants due a sync and for
// rotations waiting to be confirmed.
const syncTick = 10 * time.Minute

// settings are the Settings of the most recent payload read (the defaults
// before any).
func (a *Agent) settings() payload.Settings {
	a.setMu.Lock()
	defer a.setMu.Unlock()
	return a.set
}

// syncLoop syncs tenants whose SyncInterval has passed and confirms
// rotations whose new credential now gets a token, on every tick
// (Config.SyncTicks, else every syncTick). The first look is at the first
// tick, not at start: by then the payload has been read, so its
// SyncInterval ("0" = never) applies rather than the default.
func (a *Agent) syncLoop(ctx context.Context) {
	ticks := a.cfg.SyncTicks
	if ticks == nil {
		t := time.NewTicker(syncTick)
		defer t.Stop()
		ticks = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
			a.syncDue(ctx)
		}
	}
}

func (a *Agent) syncDue(ctx context.Context) {
	interval := a.settings().SyncInterval
	tenants, err := a.st.Tenants(ctx)
	if err != nil {
		a.log.Error("list tenants", "err", err)
		return
	}
	creds, err := a.st.Credentials(ctx)
	if err != nil {
		a.log.Error("list credentials", "err", err)
		return
	}
	waiting := map[string]bool{} // tenants that keep a previous credential
	for _, c := range creds {
		if c.State == store.CredPrevious {
			waiting[c.TenantID] = true
		}
	}
	now := a.cfg.Now()
	for _, ten := range tenants {
		if syncDue(ten, interval, now) {
			a.scheduleSync(ten.ID)
		} else if waiting[ten.ID] {
			a.confirmPending(ctx, ten.ID)
		}
	}
}

// syncDue reports whether a tenant's sync should run at now: a pass is
// under way (it resumes, unless Apple asked for a wait that has not passed)
// or the interval has passed since the last finished one.
func syncDue(t store.Tenant, interval time.Duration, now time.Time) bool {
	if interval <= 0 || now.Before(t.SyncPausedUntil) {
		return false
	}
	return !t.SyncPassStartedAt.IsZero() || now.Sub(t.LastSyncAt) >= interval
}

// scheduleSync starts a background sync of tenantID unless one runs or
// syncing is off ("0").
func (a *Agent) scheduleSync(tenantID string) {
	if a.settings().SyncInterval == 0 {
		return
	}
	go func() {
		if err := a.SyncTenant(a.bg, tenantID); err != nil && !errors.Is(err, ErrSyncRunning) {
			a.log.Debug("sync", "tenant", tenantID, "err", err)
		}
	}()
}

// SyncTenant runs the tenant's sync pass now with its active credential:
// it resumes the pass under way (stopped by an error, a restart, a kill or
// a rotation) or begins a new one. A failure is recorded on the tenant
// (SyncError) and cleared by the next success. The sync.finished,
// sync.paused or sync.failed event is published once the sync is over, so a
// new sync of the tenant may start as soon as it is seen.
func (a *Agent) SyncTenant(ctx context.Context, tenantID string) error {
	a.syncMu.Lock()
	if a.syncing[tenantID] {
		a.syncMu.Unlock()
		return ErrSyncRunning
	}
	a.syncing[tenantID] = true
	a.syncMu.Unlock()
	end, err := a.syncOnce(ctx, tenantID)
	a.syncMu.Lock()
	delete(a.syncing, tenantID)
	a.syncMu.Unlock()
	if end.Kind != "" {
		a.publish(ctx, end)
	}
	return err
}

// budget returns the tenant's request budget, new when the payload's
// RequestsPerMinute changed.
func (a *Agent) budget(tenantID string) *apple.Budget {
	perMinute := a.settings().RequestsPerMinute
	if perMinute == 0 {
		perMinute = a.cfg.AppleRequestsPerMinute
	}
	a.syncMu.Lock()
	defer a.syncMu.Unlock()
	tb, ok := a.budgets[tenantID]
	if !ok || tb.perMinute != perMinute {
		tb = tenantBudget{apple.NewBudget(float64(perMinute)), perMinute}
		a.budgets[tenantID] = tb
	}
	return tb.Budget
}

// tenantBudget is a tenant's budget and the ceiling it was made with.
type tenantBudget struct {
	*apple.Budget
	perMinute int
}

// syncOnce runs one sync and returns the event that ends it (none when the
// sync could not start).
func (a *Agent) syncOnce(ctx context.Context, tenantID string) (store.Event, error) {
	before, err := a.st.Tenant(ctx, tenantID)
	if err != nil {
		return store.Event{}, fmt.Errorf("read tenant: %w", err)
	}
	cred, target, err := a.activeTarget(ctx, tenantID)
	if err != nil {
		return store.Event{}, err
	}
	defer func() { target.Key = nil }()
	ten, err := a.st.BeginPass(ctx, tenantID)
	if err != nil {
		return store.Event{}, fmt.Errorf("begin sync pass: %w", err)
	}
	a.publish(ctx, store.Event{Kind: EvSyncStarted, TenantID: tenantID, CredentialID: cred.ID,
		Message: fmt.Sprintf("sync of %q started with credential %q", ten.Name, cred.Name),
		Fields:  map[string]string{"resumed": strconv.FormatBool(!before.SyncPassStartedAt.IsZero())}})
	sink := &storeSink{st: a.st, tenantID: tenantID, since: ten.SyncPassStartedAt}
	b := a.budget(tenantID)
	progress := func(p apple.Progress) {
		a.progress(store.Event{Kind: EvSyncProgress, TenantID: tenantID,
			Message: fmt.Sprintf("listed %d devices, read the coverage of %d", p.Devices, p.Checked),
			Fields: map[string]string{"pages": strconv.Itoa(p.Pages), "devices": strconv.Itoa(p.Devices),
				"checked": strconv.Itoa(p.Checked), "coverage": strconv.Itoa(p.Coverage), "total": strconv.Itoa(p.Total),
				"rate_per_minute": strconv.FormatFloat(p.Rate, 'f', 1, 64)}})
	}
	state := apple.SyncState{Cursor: ten.SyncCursor, Listed: ten.SyncListed}
	err = a.cfg.Syncer.Sync(ctx, target, b, state, sink, progress)
	if errors.Is(err, apple.ErrCursorRefused) {
		// Apple no longer takes the stored cursor: read the list again from
		// the first page. Coverage read in this pass is not read again.
		if rerr := a.st.RestartList(ctx, tenantID); rerr != nil {
			return a.syncStopped(ctx, tenantID, cred.ID, fmt.Errorf("restart device list: %w", rerr))
		}
		a.publish(ctx, store.Event{Kind: EvSyncRestarted, TenantID: tenantID, CredentialID: cred.ID,
			Message: "Apple refused the stored device list cursor; reading the device list again from the first page",
			Fields:  errorFields(err)})
		err = a.cfg.Syncer.Sync(ctx, target, b, apple.SyncState{}, sink, progress)
	}
	if err != nil {
		return a.syncStopped(ctx, tenantID, cred.ID, err)
	}
	if err := a.st.EndPass(ctx, tenantID, a.cfg.Now()); err != nil {
		return store.Event{Kind: EvSyncFailed, TenantID: tenantID, CredentialID: cred.ID, Message: "sync failed: record sync: " + err.Error()},
			fmt.Errorf("record sync: %w", err)
	}
	a.markAuth(ctx, cred.ID)
	// The active credential just got a token: a rotation waiting for that is
	// confirmed before the sync is reported finished.
	a.mu.Lock()
	a.confirm(ctx, tenantID)
	a.mu.Unlock()
	after, _ := a.st.Tenant(ctx, tenantID)
	n := after.Counts
	return store.Event{Kind: EvSyncFinished, TenantID: tenantID, CredentialID: cred.ID,
		Message: fmt.Sprintf("sync finished: %d devices (%d released), %d coverage records", n.Devices, n.Released, n.Coverage),
		Fields: map[string]string{"devices": strconv.Itoa(n.Devices), "coverage": strconv.Itoa(n.Coverage),
			"released": strconv.Itoa(n.Released), "newly_released": strconv.Itoa(sink.released),
			"active": strconv.Itoa(n.Active), "expired": strconv.Itoa(n.Expired), "none": strconv.Itoa(n.None),
			"unknown": strconv.Itoa(n.Unknown)}}, nil
}

// syncStopped records a sync that stopped with err, its progress kept: a
// pause Apple asked for (sync.paused, resumed after it) or a failure
// (sync.failed, resumed on the next tick).
func (a *Agent) syncStopped(ctx context.Context, tenantID, credID string, err error) (store.Event, error) {
	var pe *apple.PausedError
	var until time.Time
	if errors.As(err, &pe) {
		until = pe.Until
	}
	if serr := a.st.SyncStopped(context.WithoutCancel(ctx), tenantID, err.Error(), until); serr != nil {
		a.log.Error("record sync stop", "tenant", tenantID, "err", serr)
	}
	ev := store.Event{Kind: EvSyncFailed, TenantID: tenantID, CredentialID: credID, Message: "sync failed: " + err.Error(),
		Fields: errorFields(err)}
	if !until.IsZero() {
		ev.Kind, ev.Message = EvSyncPaused, "sync paused: "+err.Error()
		if ev.Fields == nil {
			ev.Fields = map[string]string{}
		}
		ev.Fields["until"] = until.UTC().Format(time.RFC3339)
	}
	return ev, fmt.Errorf("sync: %w", err)
}

// errorFields are the event fields of an error from Apple: the error id
// Apple asks for in support requests.
func errorFields(err error) map[string]string {
	if id := apple.ErrorID(err); id != "" {
		return map[string]string{"apple_error_id": id}
	}
	return nil
}

// confirmPending checks the active credential of a tenant that still keeps
// a previous one, and confirms the rotation when it gets a token.
func (a *Agent) confirmPending(ctx context.Context, tenantID string) {
	if a.settings().AuthCheck == payload.AuthOff {
		return
	}
	cred, target, err := a.activeTarget(ctx, tenantID)
	if err != nil {
		return
	}
	if res := a.cfg.Checker.Check(ctx, target); res.Outcome == Accepted {
		a.markAuth(ctx, cred.ID)
		a.mu.Lock()
		a.confirm(ctx, tenantID)
		a.mu.Unlock()
	}
}

// activeTarget loads the tenant's active credential and its key.
func (a *Agent) activeTarget(ctx context.Context, tenantID string) (store.Credential, AuthTarget, error) {
	creds, err := a.st.Credentials(ctx)
	if err != nil {
		return store.Credential{}, AuthTarget{}, fmt.Errorf("list credentials: %w", err)
	}
	for _, c := range creds {
		if c.TenantID != tenantID || c.State != store.CredActive {
			continue
		}
		pem, err := a.st.Key(ctx, c.ID)
		if err != nil {
			return c, AuthTarget{}, fmt.Errorf("read active key: %w", err)
		}
		key, err := payload.ParsePrivateKey(pem)
		clear(pem)
		if err != nil {
			return c, AuthTarget{}, fmt.Errorf("parse active key: %w", err)
		}
		s := a.settings()
		return c, AuthTarget{ClientID: c.ClientID, KeyID: c.KeyID, Scope: c.Scope, Key: key,
			TokenURL: s.TokenURL, APIBaseURL: s.APIBase(c.Scope)}, nil
	}
	return store.Credential{}, AuthTarget{}, fmt.Errorf("tenant %s has no active credential: %w", tenantID, store.ErrNotFound)
}
