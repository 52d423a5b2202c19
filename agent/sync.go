package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
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
	wg sync.WaitGroup  // the loop and background syncs: Run waits for them

	// perMinute is the ceiling on requests to Apple per tenant when the
	// payload sets none (Config.AppleRequestsPerMinute); 0 adapts.
	perMinute int

	mu      sync.Mutex
	running map[string]bool                  // tenant id → sync running
	set     atomic.Pointer[payload.Settings] // of the most recent machine-scope payload read; without mu, see settings
	budgets map[string]tenantBudget          // tenant id → its requests to Apple
}

// SyncTenant runs the tenant's sync pass now with its active credential:
// it resumes the pass under way (stopped by an error, a restart, a kill or
// a rotation) or begins a new one. A failure is recorded on the tenant
// (SyncError) and cleared by the next success. The sync.finished,
// sync.paused or sync.failed event is published once the sync is over, so a
// new sync of the tenant may start as soon as it is seen.
func (a *Agent) SyncTenant(ctx context.Context, tenantID string) error {
	return a.syncs.tenant(ctx, tenantID)
}

// confirmed records that credID got a token and confirms the rotation of
// tenantID that waits for that, under mu.
func (a *Agent) confirmed(ctx context.Context, tenantID, credID string) {
	a.markAuth(ctx, credID)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.confirm(ctx, tenantID, credID)
}

// settings are the Settings of the most recent payload read (the defaults
// before any). They are read without mu: a status build reads them, on the
// goroutine of a change, which may hold mu (statussnap.go).
func (s *syncer) settings() payload.Settings {
	if set := s.set.Load(); set != nil {
		return *set
	}
	return payload.DefaultSettings()
}

// setSettings keeps the Settings of a machine-scope payload just read.
func (s *syncer) setSettings(set payload.Settings) {
	s.set.Store(&set)
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
	now := s.now()
	for _, ten := range tenants {
		if syncDue(ten, interval, now) {
			s.schedule(ten.ID)
		} else if waiting[ten.ID] {
			s.confirmPending(ctx, ten.ID)
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
	s.wg.Go(func() {
		if err := s.tenant(s.bg, tenantID); err != nil && !errors.Is(err, errSyncRunning) {
			s.log.Debug("sync", "tenant", tenantID, "err", err)
		}
	})
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

// budget returns the tenant's request budget, new when the ceiling
// (the payload's RequestsPerMinute, else Config.AppleRequestsPerMinute)
// changed.
func (s *syncer) budget(tenantID string) *apple.Budget {
	perMinute := s.settings().RequestsPerMinute
	if perMinute == 0 {
		perMinute = s.perMinute
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tb, ok := s.budgets[tenantID]
	if !ok || tb.perMinute != perMinute {
		tb = tenantBudget{apple.NewBudget(float64(perMinute)), perMinute}
		s.budgets[tenantID] = tb
	}
	return tb.Budget
}

// tenantBudget is a tenant's budget and the ceiling it was made with.
type tenantBudget struct {
	*apple.Budget
	perMinute int
}

// once runs one sync and returns the event that ends it (none when the
// sync could not start).
func (s *syncer) once(ctx context.Context, tenantID string) (store.Event, error) {
	before, err := s.st.Tenant(ctx, tenantID)
	if err != nil {
		return store.Event{}, fmt.Errorf("read tenant: %w", err)
	}
	cred, target, err := s.activeTarget(ctx, tenantID)
	if err != nil {
		return store.Event{}, err
	}
	defer func() { target.Key = nil }()
	ten, err := s.st.BeginPass(ctx, tenantID)
	if err != nil {
		return store.Event{}, fmt.Errorf("begin sync pass: %w", err)
	}
	s.publish(ctx, store.Event{Kind: store.EvSyncStarted, TenantID: tenantID, CredentialID: cred.ID,
		Message: fmt.Sprintf("sync of %q started with credential %q", ten.Name, cred.Name),
		Fields:  map[string]string{"resumed": strconv.FormatBool(!before.SyncPassStartedAt.IsZero())}})
	sink := &storeSink{st: s.st, tenantID: tenantID, since: ten.SyncPassStartedAt}
	b := s.budget(tenantID)
	progress := func(p apple.Progress) {
		s.progress(store.Event{Kind: store.EvSyncProgress, TenantID: tenantID,
			Message: fmt.Sprintf("listed %d devices, read the coverage of %d", p.Devices, p.Checked),
			Fields: map[string]string{"pages": strconv.Itoa(p.Pages), "devices": strconv.Itoa(p.Devices),
				"checked": strconv.Itoa(p.Checked), "coverage": strconv.Itoa(p.Coverage), "total": strconv.Itoa(p.Total),
				"rate_per_minute": strconv.FormatFloat(p.Rate, 'f', 1, 64)}})
	}
	state := apple.SyncState{Cursor: ten.SyncCursor, Listed: ten.SyncListed}
	err = s.apple.Sync(ctx, target, b, state, sink, progress)
	if errors.Is(err, apple.ErrCursorRefused) {
		// Apple no longer takes the stored cursor: read the list again from
		// the first page. Coverage read in this pass is not read again.
		if rerr := s.st.RestartList(ctx, tenantID); rerr != nil {
			return s.stopped(ctx, tenantID, cred.ID, fmt.Errorf("restart device list: %w", rerr))
		}
		s.publish(ctx, store.Event{Kind: store.EvSyncRestarted, TenantID: tenantID, CredentialID: cred.ID,
			Message: "Apple refused the stored device list cursor; reading the device list again from the first page",
			Fields:  errorFields(err)})
		err = s.apple.Sync(ctx, target, b, apple.SyncState{}, sink, progress)
	}
	if err != nil {
		return s.stopped(ctx, tenantID, cred.ID, err)
	}
	if err := s.st.EndPass(ctx, tenantID, s.now()); err != nil {
		return store.Event{Kind: store.EvSyncFailed, TenantID: tenantID, CredentialID: cred.ID, Message: "sync failed: record sync: " + err.Error()},
			fmt.Errorf("record sync: %w", err)
	}
	// The sync's credential just got a token: a rotation waiting for that is
	// confirmed before the sync is reported finished, if that credential is
	// still the active one (a cut-over during the sync: store.Confirm).
	s.confirmed(ctx, tenantID, cred.ID)
	after, _ := s.st.Tenant(ctx, tenantID)
	n := after.Counts
	return store.Event{Kind: store.EvSyncFinished, TenantID: tenantID, CredentialID: cred.ID,
		Message: fmt.Sprintf("sync finished: %d devices (%d released), %d coverage records", n.Devices, n.Released, n.Coverage),
		Fields: map[string]string{"devices": strconv.Itoa(n.Devices), "coverage": strconv.Itoa(n.Coverage),
			"released": strconv.Itoa(n.Released), "newly_released": strconv.Itoa(sink.released),
			"active": strconv.Itoa(n.Active), "expired": strconv.Itoa(n.Expired), "none": strconv.Itoa(n.None),
			"unknown": strconv.Itoa(n.Unknown)}}, nil
}

// stopped records a sync that stopped with err, its progress kept: a pause
// Apple asked for (sync.paused, resumed after it) or a failure (sync.failed,
// resumed on the next tick).
func (s *syncer) stopped(ctx context.Context, tenantID, credID string, err error) (store.Event, error) {
	var pe *apple.PausedError
	var until time.Time
	if errors.As(err, &pe) {
		until = pe.Until
	}
	if serr := s.st.SyncStopped(context.WithoutCancel(ctx), tenantID, err.Error(), until); serr != nil {
		s.log.Error("record sync stop", "tenant", tenantID, "err", serr)
	}
	ev := store.Event{Kind: store.EvSyncFailed, TenantID: tenantID, CredentialID: credID, Message: "sync failed: " + err.Error(),
		Fields: errorFields(err)}
	if !until.IsZero() {
		ev.Kind, ev.Message = store.EvSyncPaused, "sync paused: "+err.Error()
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
