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
	for _, ten := range tenants {
		if interval > 0 && a.cfg.Now().Sub(ten.LastSyncAt) >= interval {
			a.scheduleSync(ten.ID)
		} else if waiting[ten.ID] {
			a.confirmPending(ctx, ten.ID)
		}
	}
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

// SyncTenant imports the tenant's devices and coverage now with its active
// credential, resuming an interrupted sync from its cursor. A failure is
// recorded on the tenant (SyncError) and cleared by the next success. The
// sync.finished or sync.failed event is published once the sync is over, so
// a new sync of the tenant may start as soon as it is seen.
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

// syncOnce runs one sync and returns the event that ends it (none when the
// sync could not start).
func (a *Agent) syncOnce(ctx context.Context, tenantID string) (store.Event, error) {
	ten, err := a.st.Tenant(ctx, tenantID)
	if err != nil {
		return store.Event{}, fmt.Errorf("read tenant: %w", err)
	}
	cred, target, err := a.activeTarget(ctx, tenantID)
	if err != nil {
		return store.Event{}, err
	}
	defer func() { target.Key = nil }()
	a.publish(ctx, store.Event{Kind: EvSyncStarted, TenantID: tenantID, CredentialID: cred.ID,
		Message: fmt.Sprintf("sync of %q started with credential %q", ten.Name, cred.Name),
		Fields:  map[string]string{"resumed": strconv.FormatBool(ten.SyncCursor != "")}})
	if _, err := a.st.BeginPass(ctx, tenantID); err != nil {
		return store.Event{}, fmt.Errorf("begin sync pass: %w", err)
	}
	sink := &storeSink{st: a.st, tenantID: tenantID, cursor: ten.SyncCursor}
	err = a.cfg.Syncer.Sync(ctx, target, ten.SyncCursor, sink, func(p apple.Progress) {
		a.progress(store.Event{Kind: EvSyncProgress, TenantID: tenantID, Message: fmt.Sprintf("synced %d devices", p.Devices),
			Fields: map[string]string{"pages": strconv.Itoa(p.Pages), "devices": strconv.Itoa(p.Devices),
				"coverage": strconv.Itoa(p.Coverage), "total": strconv.Itoa(p.Total)}})
	})
	if err != nil {
		// Keep the cursor of the last page stored (the one the sync started
		// from when none was), even when ctx was cancelled.
		if serr := a.st.SetSync(context.WithoutCancel(ctx), tenantID, sink.cursor, ten.LastSyncAt, err.Error()); serr != nil {
			a.log.Error("record sync failure", "tenant", tenantID, "err", serr)
		}
		return store.Event{Kind: EvSyncFailed, TenantID: tenantID, CredentialID: cred.ID, Message: "sync failed: " + err.Error()},
			fmt.Errorf("sync: %w", err)
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
	devices, coverage, _ := a.st.Counts(ctx, tenantID)
	return store.Event{Kind: EvSyncFinished, TenantID: tenantID, CredentialID: cred.ID,
		Message: fmt.Sprintf("sync finished: %d devices, %d coverage records", devices, coverage),
		Fields:  map[string]string{"devices": strconv.Itoa(devices), "coverage": strconv.Itoa(coverage)}}, nil
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

// storeSink writes a sync into the tenant, a page at a time.
type storeSink struct {
	st       *store.Store
	tenantID string
	devices  []store.Device
	coverage []store.DeviceCoverage
	cursor   string // last cursor committed (the stored one before any page)
}

var _ apple.Sink = (*storeSink)(nil)

func (s *storeSink) Devices(ctx context.Context, ds []apple.Device) error {
	for _, d := range ds {
		s.devices = append(s.devices, store.Device{Serial: d.Serial, AppleID: d.ID, Model: d.Model,
			ProductFamily: d.ProductFamily, Status: d.Status, Attrs: d.Attributes})
	}
	return nil
}

func (s *storeSink) Coverage(ctx context.Context, cs []apple.DeviceCoverage) error {
	for _, dc := range cs {
		recs := make([]store.Coverage, 0, len(dc.Records))
		for _, r := range dc.Records {
			recs = append(recs, store.Coverage{ID: r.ID, Serial: dc.Serial, Description: r.Description, Status: r.Status,
				StartDate: dateOf(r.Start), EndDate: dateOf(r.End), Attrs: r.Attributes})
		}
		s.coverage = append(s.coverage, store.DeviceCoverage{Serial: dc.Serial, Records: recs})
	}
	return nil
}

// Cursor commits the buffered page together with the cursor.
func (s *storeSink) Cursor(ctx context.Context, next string) error {
	if _, err := s.st.SyncPage(ctx, s.tenantID, s.devices, next); err != nil {
		return fmt.Errorf("store sync page: %w", err)
	}
	if err := s.st.UpsertCoverage(ctx, s.tenantID, s.coverage); err != nil {
		return fmt.Errorf("store coverage: %w", err)
	}
	s.devices, s.coverage, s.cursor = s.devices[:0], s.coverage[:0], next
	return nil
}

func dateOf(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
