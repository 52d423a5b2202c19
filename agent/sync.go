package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// errSyncRunning: a sync of the tenant is already running.
var errSyncRunning = api.ErrBusy

// syncTick is how often the agent looks for tenants due a sync and for
// rotations waiting to be confirmed.
const syncTick = 10 * time.Minute

// syncer schedules and runs tenant syncs and the confirmations that wait for
// a token. It owns the set of tenants syncing now and the settings of the
// most recent machine-scope payload; the agent's lock is taken only to
// confirm a rotation.
type syncer struct {
	st       *store.Store
	log      *slog.Logger
	now      func() time.Time
	ticks    <-chan time.Time // nil: every syncTick
	checker  Checker
	apple    *appleBackend
	publish  func(context.Context, store.Event) // recorded and fanned out
	progress func(store.Event)                  // fanned out only
	// confirmed records that credID got a token and confirms the rotation
	// of tenantID waiting for that.
	confirmed func(ctx context.Context, tenantID, credID string)

	bg context.Context // lives as long as Run; background syncs use it

	mu      sync.Mutex
	running map[string]bool  // tenant id → sync running
	set     payload.Settings // of the most recent machine-scope payload read
}

// SyncTenant imports the tenant's devices and coverage now with its active
// credential, resuming an interrupted sync from its cursor. A failure is
// recorded on the tenant (SyncError) and cleared by the next success. The
// sync.finished or sync.failed event is published once the sync is over, so
// a new sync of the tenant may start as soon as it is seen.
func (a *Agent) SyncTenant(ctx context.Context, tenantID string) error {
	return a.syncs.tenant(ctx, tenantID)
}

// confirmed records that credID got a token and confirms the rotation of
// tenantID that waits for that, under mu.
func (a *Agent) confirmed(ctx context.Context, tenantID, credID string) {
	a.markAuth(ctx, credID)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.confirm(ctx, tenantID)
}

// settings are the Settings of the most recent payload read (the defaults
// before any).
func (s *syncer) settings() payload.Settings {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.set
}

// setSettings keeps the Settings of a machine-scope payload just read.
func (s *syncer) setSettings(set payload.Settings) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set = set
}

// busy reports whether a sync of tenantID is running.
func (s *syncer) busy(tenantID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running[tenantID]
}

// loop syncs tenants whose SyncInterval has passed and confirms rotations
// whose new credential now gets a token, on every tick (Config.SyncTicks,
// else every syncTick). The first look is at the first tick, not at start:
// by then the payload has been read, so its SyncInterval ("0" = never)
// applies rather than the default.
func (s *syncer) loop(ctx context.Context) {
	ticks := s.ticks
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
			s.due(ctx)
		}
	}
}

func (s *syncer) due(ctx context.Context) {
	interval := s.settings().SyncInterval
	tenants, err := s.st.Tenants(ctx)
	if err != nil {
		s.log.Error("list tenants", "err", err)
		return
	}
	creds, err := s.st.Credentials(ctx)
	if err != nil {
		s.log.Error("list credentials", "err", err)
		return
	}
	waiting := map[string]bool{} // tenants that keep a previous credential
	for _, c := range creds {
		if c.State == store.CredPrevious {
			waiting[c.TenantID] = true
		}
	}
	for _, ten := range tenants {
		if interval > 0 && s.now().Sub(ten.LastSyncAt) >= interval {
			s.schedule(ten.ID)
		} else if waiting[ten.ID] {
			s.confirmPending(ctx, ten.ID)
		}
	}
}

// schedule starts a background sync of tenantID unless one runs or syncing
// is off ("0").
func (s *syncer) schedule(tenantID string) {
	if s.settings().SyncInterval == 0 {
		return
	}
	s.start(tenantID)
}

// start runs a sync of tenantID in the background.
func (s *syncer) start(tenantID string) {
	go func() {
		if err := s.tenant(s.bg, tenantID); err != nil && !errors.Is(err, errSyncRunning) {
			s.log.Debug("sync", "tenant", tenantID, "err", err)
		}
	}()
}

// tenant runs one sync of tenantID unless one is running (errSyncRunning)
// and publishes the event that ends it once the sync is over, so a new
// sync of the tenant may start as soon as it is seen.
func (s *syncer) tenant(ctx context.Context, tenantID string) error {
	s.mu.Lock()
	if s.running[tenantID] {
		s.mu.Unlock()
		return errSyncRunning
	}
	s.running[tenantID] = true
	s.mu.Unlock()
	end, err := s.once(ctx, tenantID)
	// The end event goes out before the tenant counts as idle (busy waits
	// for s.mu), so whoever starts the next sync sees this one's end first.
	s.mu.Lock()
	if end.Kind != "" {
		s.publish(ctx, end)
	}
	delete(s.running, tenantID)
	s.mu.Unlock()
	return err
}

// once runs one sync and returns the event that ends it (none when the
// sync could not start).
func (s *syncer) once(ctx context.Context, tenantID string) (store.Event, error) {
	ten, err := s.st.Tenant(ctx, tenantID)
	if err != nil {
		return store.Event{}, fmt.Errorf("read tenant: %w", err)
	}
	cred, target, err := s.activeTarget(ctx, tenantID)
	if err != nil {
		return store.Event{}, err
	}
	defer func() { target.Key = nil }()
	s.publish(ctx, store.Event{Kind: store.EvSyncStarted, TenantID: tenantID, CredentialID: cred.ID,
		Message: fmt.Sprintf("sync of %q started with credential %q", ten.Name, cred.Name),
		Fields:  map[string]string{"resumed": strconv.FormatBool(ten.SyncCursor != "")}})
	sink := &storeSink{st: s.st, tenantID: tenantID, cursor: ten.SyncCursor}
	err = s.apple.Sync(ctx, target, ten.SyncCursor, sink, func(p apple.Progress) {
		s.progress(store.Event{Kind: store.EvSyncProgress, TenantID: tenantID, Message: fmt.Sprintf("synced %d devices", p.Devices),
			Fields: map[string]string{"pages": strconv.Itoa(p.Pages), "devices": strconv.Itoa(p.Devices),
				"coverage": strconv.Itoa(p.Coverage), "total": strconv.Itoa(p.Total)}})
	})
	if err != nil {
		// Keep the cursor of the last page stored (the one the sync started
		// from when none was), even when ctx was cancelled.
		if serr := s.st.SetSync(context.WithoutCancel(ctx), tenantID, sink.cursor, ten.LastSyncAt, err.Error()); serr != nil {
			s.log.Error("record sync failure", "tenant", tenantID, "err", serr)
		}
		return store.Event{Kind: store.EvSyncFailed, TenantID: tenantID, CredentialID: cred.ID, Message: "sync failed: " + err.Error()},
			fmt.Errorf("sync: %w", err)
	}
	if err := s.st.SetSync(ctx, tenantID, "", s.now(), ""); err != nil {
		return store.Event{Kind: store.EvSyncFailed, TenantID: tenantID, CredentialID: cred.ID, Message: "sync failed: record sync: " + err.Error()},
			fmt.Errorf("record sync: %w", err)
	}
	// The active credential just got a token: a rotation waiting for that is
	// confirmed before the sync is reported finished.
	s.confirmed(ctx, tenantID, cred.ID)
	devices, coverage, _ := s.st.Counts(ctx, tenantID)
	return store.Event{Kind: store.EvSyncFinished, TenantID: tenantID, CredentialID: cred.ID,
		Message: fmt.Sprintf("sync finished: %d devices, %d coverage records", devices, coverage),
		Fields:  map[string]string{"devices": strconv.Itoa(devices), "coverage": strconv.Itoa(coverage)}}, nil
}

// confirmPending checks the active credential of a tenant that still keeps
// a previous one, and confirms the rotation when it gets a token.
func (s *syncer) confirmPending(ctx context.Context, tenantID string) {
	if s.settings().AuthCheck == payload.AuthOff {
		return
	}
	cred, target, err := s.activeTarget(ctx, tenantID)
	if err != nil {
		return
	}
	if res := s.checker.Check(ctx, target); res.Outcome == apple.Accepted {
		s.confirmed(ctx, tenantID, cred.ID)
	}
}

// activeTarget loads the tenant's active credential and its key.
func (s *syncer) activeTarget(ctx context.Context, tenantID string) (store.Credential, AuthTarget, error) {
	ten, err := s.st.Tenant(ctx, tenantID)
	if err != nil {
		return store.Credential{}, AuthTarget{}, fmt.Errorf("read tenant: %w", err)
	}
	creds, err := s.st.Credentials(ctx)
	if err != nil {
		return store.Credential{}, AuthTarget{}, fmt.Errorf("list credentials: %w", err)
	}
	for _, c := range creds {
		if c.TenantID != tenantID || c.State != store.CredActive {
			continue
		}
		t, err := s.targetOf(ctx, ten, c)
		return c, t, err
	}
	return store.Credential{}, AuthTarget{}, fmt.Errorf("tenant %s has no active credential: %w", tenantID, store.ErrNotFound)
}

// targetOf loads credential c of tenant ten with its key and the tenant's
// endpoints. The caller drops the key when done.
func (s *syncer) targetOf(ctx context.Context, ten store.Tenant, c store.Credential) (AuthTarget, error) {
	pem, err := s.st.Key(ctx, c.ID)
	if err != nil {
		return AuthTarget{}, fmt.Errorf("read key: %w", err)
	}
	key, err := payload.ParsePrivateKey(pem)
	clear(pem)
	if err != nil {
		return AuthTarget{}, fmt.Errorf("parse key: %w", err)
	}
	tok, base := s.endpoints(ten)
	if base == "" {
		base = apple.BaseURLFor(c.Scope)
	}
	return AuthTarget{Credential: apple.Credential{ClientID: c.ClientID, KeyID: c.KeyID, Scope: c.Scope, Key: key},
		TokenURL: tok, APIBaseURL: base}, nil
}

// endpoints are the token and API URLs ten is checked and synced against:
// those its manual add recorded, else the most recent payload's (Apple's
// before any). An empty API URL means Apple's for the scope.
func (s *syncer) endpoints(ten store.Tenant) (tokenURL, apiBaseURL string) {
	set := s.settings()
	tokenURL, apiBaseURL = set.TokenURL, set.APIBaseURL
	if ten.TokenURL != "" {
		tokenURL, apiBaseURL = ten.TokenURL, ten.APIBaseURL
	}
	return tokenURL, apiBaseURL
}

// storeSink writes a sync into the tenant, one transaction per page.
type storeSink struct {
	st       *store.Store
	tenantID string
	cursor   string // last cursor committed (the stored one before any page)
}

var _ apple.Sink = (*storeSink)(nil)

// Page stores the page's devices and coverage together with its cursor.
func (s *storeSink) Page(ctx context.Context, ds []apple.Device, cs []apple.DeviceCoverage, next string) error {
	devices := make([]store.Device, 0, len(ds))
	for _, d := range ds {
		devices = append(devices, store.Device{Serial: d.Serial, AppleID: d.ID, Model: d.Model,
			ProductFamily: d.ProductFamily, Status: d.Status, Attrs: d.Attributes})
	}
	coverage := make([]store.DeviceCoverage, 0, len(cs))
	for _, dc := range cs {
		recs := make([]store.Coverage, 0, len(dc.Records))
		for _, r := range dc.Records {
			recs = append(recs, store.Coverage{ID: r.ID, Serial: dc.Serial, Description: r.Description, Status: r.Status,
				StartDate: dateOf(r.Start), EndDate: dateOf(r.End), Attrs: r.Attributes})
		}
		coverage = append(coverage, store.DeviceCoverage{Serial: dc.Serial, Records: recs})
	}
	if err := s.st.SyncPage(ctx, s.tenantID, devices, coverage, next); err != nil {
		return fmt.Errorf("store sync page: %w", err)
	}
	s.cursor = next
	return nil
}

func dateOf(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
