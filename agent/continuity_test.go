package agent_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// instantRetries makes the agent's Apple client retry without waiting, so
// an unreachable endpoint is classified at once.
func instantRetries(c *agent.Config) {
	c.AppleSleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
}

// noRetries keeps a transient import failure waiting for longer than a test.
func noRetries(c *agent.Config) { c.Backoff = func(int) time.Duration { return time.Hour } }

// testClock is a clock that moves only when told.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.Now()} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// unregisteredKey is a well-formed credential for clientID that the fake
// Apple does not know.
func unregisteredKey(t testing.TB, clientID string) appletest.Key {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(priv)
	return appletest.Key{ClientID: clientID, KeyID: uuid.NewString(), Scope: apple.ScopeBusiness, Private: priv,
		PEM: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})}
}

// closedTokenURL is a token URL on a loopback port that nothing listens on.
func closedTokenURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/auth/oauth2/token"
}

// syncEnded matches the end (finished or failed) of a sync of tenantID ("" any).
func syncEnded(tenantID string) func(store.Event) bool {
	return func(e store.Event) bool {
		return (e.Kind == store.EvSyncFinished || e.Kind == store.EvSyncFailed) && (tenantID == "" || e.TenantID == tenantID)
	}
}

func isKind(kind store.EventKind) func(store.Event) bool {
	return func(e store.Event) bool { return e.Kind == kind }
}

// serials lists every device serial of the tenant, failing on a duplicate.
func serials(t testing.TB, st *store.Store, tenantID string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	after := ""
	for {
		devs, next, err := st.Devices(context.Background(), tenantID, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range devs {
			if out[d.Serial] {
				t.Fatalf("device %s listed twice", d.Serial)
			}
			out[d.Serial] = true
		}
		if next == "" {
			return out
		}
		after = next
	}
}

// wantRecords fails unless the tenant holds exactly the fake's first n
// devices and their coverage, each once.
func wantRecords(t testing.TB, st *store.Store, tenantID string, n int) {
	t.Helper()
	devices, coverage, err := st.Counts(context.Background(), tenantID)
	if err != nil || devices != n || coverage != appletest.CoverageTotal(n) {
		t.Fatalf("tenant holds %d devices, %d coverage (%v); want %d, %d", devices, coverage, err, n, appletest.CoverageTotal(n))
	}
	got := serials(t, st, tenantID)
	for i := range n {
		if !got[appletest.DeviceID(i)] {
			t.Fatalf("device %s is missing", appletest.DeviceID(i))
		}
	}
}

// credByKey finds the credential records holding Key ID keyID, newest last.
func credByKey(t testing.TB, st *store.Store, keyID string) []store.Credential {
	t.Helper()
	creds, err := st.Credentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []store.Credential
	for _, c := range creds {
		if c.KeyID == keyID {
			out = append(out, c)
		}
	}
	return out
}

// wantWiped fails unless credential id is in state with no key left.
func wantWiped(t testing.TB, st *store.Store, id string, state store.CredState) {
	t.Helper()
	c, err := st.Credential(context.Background(), id)
	if err != nil || c.State != state || c.HasKey {
		t.Fatalf("credential %s: %+v, %v; want %s without key", id, c, err, state)
	}
	if pem, err := st.Key(context.Background(), id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("key of %s credential %s: %d bytes, %v; want ErrNotFound", state, id, len(pem), err)
	}
}

func TestRotationKeepsTheTenantAndEveryRecord(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	st := h.agent.Store()
	a := h.key("")
	add := h.entry("Acme", payload.IntentAdd, "", a, testPassphrase)
	h.push(add)
	h.waitFor("first sync", isKind(store.EvSyncFinished))
	credA := h.active("")
	tenant := credA.TenantID
	wantRecords(t, st, tenant, 25)
	before := serials(t, st, tenant)

	// In Apple Business Manager the admin makes a new key for the same
	// client: A's key is no longer accepted and its sessions end. Meanwhile
	// 15 devices join the organisation.
	b := h.key(a.ClientID)
	h.apple.RevokeTokens()
	h.apple.SetDevices(40)
	h.push(add, h.entry("Acme 2026", payload.IntentUpdate, "", b, testPassphrase))
	imp := h.waitImport("", store.ImportApplied)
	end := h.waitFor("sync under B", syncEnded(tenant))

	credB := h.active(tenant)
	if end.Kind != store.EvSyncFinished || end.CredentialID != credB.ID || credB.KeyID != b.KeyID || imp.TenantID != tenant {
		t.Fatalf("sync after rotation: %+v; active %+v; import tenant %s", end, credB, imp.TenantID)
	}
	if end.Fields["devices"] != "40" || end.Fields["coverage"] != strconv.Itoa(appletest.CoverageTotal(40)) {
		t.Fatalf("sync.finished fields %v", end.Fields)
	}
	tenants, err := st.Tenants(ctx)
	if err != nil || len(tenants) != 1 || tenants[0].ID != tenant || tenants[0].SyncError != "" || tenants[0].SyncCursor != "" {
		t.Fatalf("tenants after rotation: %+v, %v", tenants, err)
	}
	wantRecords(t, st, tenant, 40)
	after := serials(t, st, tenant)
	for s := range before {
		if !after[s] {
			t.Fatalf("device %s synced under A is gone after the rotation", s)
		}
	}
	rot, err := st.CurrentRotation(ctx, tenant)
	if err != nil || rot.Step != store.StepConfirmed || rot.FromCredentialID != credA.ID || rot.ToCredentialID != credB.ID {
		t.Fatalf("rotation: %+v, %v", rot, err)
	}
	wantWiped(t, st, credA.ID, store.CredRetired)
	if pem, err := st.Key(ctx, credB.ID); err != nil || len(pem) == 0 {
		t.Fatalf("active key: %v", err)
	}
	h.healthy()
}

func TestInterruptedSyncResumesWithoutAskingAppleAgain(t *testing.T) {
	h := newHarness(t, instantRetries)
	h.settings[payload.KeySyncInterval] = "0" // only the test starts syncs
	ctx := context.Background()
	st := h.agent.Store()
	h.apple.SetDevices(1100) // two pages: 1000 and 100
	h.push(h.entry("Acme", payload.IntentAdd, "", h.key(""), testPassphrase))
	h.waitImport("", store.ImportApplied)
	tenant := h.active("").TenantID

	// Coverage of one device keeps failing: the device list is stored
	// whole, and the coverage read before the failure is stored in batches.
	h.apple.Fail(appletest.Fault{Endpoint: appletest.CoverageEndpoint, Mode: appletest.ServerError, Times: -1,
		DeviceID: appletest.DeviceID(1050)})
	err := h.agent.SyncTenant(ctx, tenant)
	if !errors.Is(err, apple.ErrUnreachable) {
		t.Fatalf("sync with a failing device: %v", err)
	}
	started := h.waitFor("sync started", isKind(store.EvSyncStarted))
	failed := h.waitFor("sync failed", isKind(store.EvSyncFailed))
	if started.Fields["resumed"] != "false" || failed.TenantID != tenant || failed.Fields["apple_error_id"] == "" ||
		!strings.Contains(failed.Message, failed.Fields["apple_error_id"]) {
		t.Fatalf("events: %+v %+v", started, failed)
	}
	ten, err := st.Tenant(ctx, tenant)
	if err != nil || ten.SyncError == "" || !ten.SyncListed || ten.SyncPassStartedAt.IsZero() || !ten.LastSyncAt.IsZero() {
		t.Fatalf("tenant after the failed sync: %+v, %v", ten, err)
	}
	if !strings.Contains(ten.SyncError, failed.Fields["apple_error_id"]) {
		t.Errorf("sync error %q does not keep Apple's error id", ten.SyncError)
	}
	fresh, _ := st.CoverageFreshness(ctx, tenant, time.Now())
	checked := 1100 - fresh.Never
	if ten.Counts.Devices != 1100 || checked < 1 {
		t.Fatalf("after the failure: %d devices, %d read; want the whole list and some coverage kept", ten.Counts.Devices, checked)
	}

	h.apple.ClearFaults()
	was := h.apple.Stats()
	if err := h.agent.SyncTenant(ctx, tenant); err != nil {
		t.Fatalf("resumed sync: %v", err)
	}
	now := h.apple.Stats()
	if pages, covs := now.DeviceRequests-was.DeviceRequests, now.CoverageRequests-was.CoverageRequests; pages != 0 || covs != 1100-checked {
		t.Fatalf("resumed sync read %d pages and %d coverage answers; want 0 and the %d not yet read", pages, covs, 1100-checked)
	}
	if e := h.waitFor("resumed start", isKind(store.EvSyncStarted)); e.Fields["resumed"] != "true" {
		t.Fatalf("started: %+v", e)
	}
	fin := h.waitFor("sync finished", isKind(store.EvSyncFinished))
	if fin.Fields["devices"] != "1100" || fin.Fields["coverage"] != strconv.Itoa(appletest.CoverageTotal(1100)) {
		t.Fatalf("finished: %+v", fin.Fields)
	}
	ten, err = st.Tenant(ctx, tenant)
	if err != nil || ten.SyncError != "" || ten.SyncCursor != "" || ten.LastSyncAt.IsZero() || !ten.SyncPassStartedAt.IsZero() {
		t.Fatalf("tenant after the resumed sync: %+v, %v", ten, err)
	}
	wantRecords(t, st, tenant, 1100)
	h.healthy()
}

// tickHandled sends two ticks on an unbuffered channel: the second is taken
// only once the agent has finished acting on the first.
func tickHandled(ticks chan<- time.Time, now time.Time) {
	ticks <- now
	ticks <- now
}

// noSyncSince fails if a sync started or Apple was asked for devices since was.
func noSyncSince(t *testing.T, h *harness, was appletest.Stats) {
	t.Helper()
	for {
		select {
		case e := <-h.events:
			if e.Kind == store.EvSyncStarted {
				t.Fatalf("a sync started: %+v", e)
			}
		default:
			if now := h.apple.Stats(); now.DeviceRequests != was.DeviceRequests || now.TokenRequests != was.TokenRequests {
				t.Fatalf("Apple was asked: %+v, before %+v", now, was)
			}
			return
		}
	}
}

func TestSyncScheduleFollowsSyncInterval(t *testing.T) {
	clock := newTestClock()
	ticks := make(chan time.Time)
	h := newHarness(t, func(c *agent.Config) { c.Clock, c.SyncTicks = clock, ticks })
	h.apple.SetClock(clock)
	h.settings[payload.KeySyncInterval] = "6h"
	ctx := context.Background()
	add := h.entry("Acme", payload.IntentAdd, "", h.key(""), testPassphrase)
	h.push(add)
	h.waitFor("sync after add", isKind(store.EvSyncFinished))
	tenant := h.active("").TenantID
	h.apple.SetDevices(30)

	// Five hours on, the tenant is not due: a tick syncs nothing.
	clock.Add(5 * time.Hour)
	was := h.apple.Stats()
	tickHandled(ticks, clock.Now())
	noSyncSince(t, h, was)

	// Past six hours it is due: the next tick syncs it.
	clock.Add(time.Hour + time.Minute)
	ticks <- clock.Now()
	if e := h.waitFor("scheduled sync", syncEnded(tenant)); e.Kind != store.EvSyncFinished || e.Fields["devices"] != "30" {
		t.Fatalf("scheduled sync: %+v", e)
	}
	ten, err := h.agent.Store().Tenant(ctx, tenant)
	if err != nil || !ten.LastSyncAt.Equal(clock.Now()) {
		t.Fatalf("last sync %v, want %v (%v)", ten.LastSyncAt, clock.Now(), err)
	}

	// SyncInterval "0": never, however long it has been.
	h.settings[payload.KeySyncInterval] = "0"
	h.push(add)
	h.waitFor("payload read", isKind(store.EvSourceRead))
	clock.Add(30 * 24 * time.Hour)
	was = h.apple.Stats()
	tickHandled(ticks, clock.Now())
	noSyncSince(t, h, was)
}

func TestSyncOverTheSocket(t *testing.T) {
	h := newHarness(t)
	h.settings[payload.KeySyncInterval] = "0"
	k := h.key("")
	h.push(h.entry("Acme", payload.IntentAdd, "", k, testPassphrase))
	h.waitImport("", store.ImportApplied)
	tenant := h.active("").TenantID
	h.apple.SetDevices(60)
	secrets := append(h.apple.Tokens(), strings.Split(string(k.PEM), "\n")[1])

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := api.NewClient(h.socket)
	defer c.Close()
	// follow reads the stream until the sync of tenant ends.
	follow := func() (kinds []string, end store.Event) {
		stream, err := c.Events(ctx)
		if err != nil {
			t.Fatalf("events: %v", err)
		}
		defer stream.Close()
		if ans, err := c.Sync(ctx, tenant); err != nil || !ans.Started || ans.TenantID != tenant {
			t.Fatalf("POST sync: %+v, %v", ans, err)
		}
		for {
			e, err := stream.Next()
			if err != nil {
				t.Fatalf("follow sync: %v", err)
			}
			if e.TenantID != tenant || !strings.HasPrefix(string(e.Kind), "sync.") {
				continue
			}
			kinds = append(kinds, string(e.Kind))
			if e.Kind == store.EvSyncFinished || e.Kind == store.EvSyncFailed {
				return kinds, e
			}
		}
	}

	h.apple.Fail(appletest.Fault{Endpoint: appletest.DevicesEndpoint, Mode: appletest.NotFound})
	kinds, end := follow()
	if end.Kind != store.EvSyncFailed || strings.Join(kinds, " ") != "sync.started sync.failed" {
		t.Fatalf("failing sync over the socket: %v, %+v", kinds, end)
	}
	tenants, err := c.Tenants(ctx)
	if err != nil || len(tenants) != 1 || tenants[0].SyncError == "" {
		t.Fatalf("tenants after a failed sync: %+v, %v", tenants, err)
	}
	for _, secret := range append(secrets, h.apple.Tokens()...) {
		if strings.Contains(tenants[0].SyncError, secret) || strings.Contains(end.Message, secret) {
			t.Fatalf("a sync failure shows a token or key material: %q / %q", tenants[0].SyncError, end.Message)
		}
	}

	kinds, end = follow()
	if end.Kind != store.EvSyncFinished || kinds[0] != string(store.EvSyncStarted) || len(kinds) < 3 ||
		slices.ContainsFunc(kinds[1:len(kinds)-1], func(k string) bool { return k != string(store.EvSyncProgress) }) ||
		end.Fields["devices"] != "60" || end.Fields["coverage"] != strconv.Itoa(appletest.CoverageTotal(60)) {
		t.Fatalf("sync over the socket: %v, %+v", kinds, end)
	}
	tenants, err = c.Tenants(ctx)
	if err != nil || len(tenants) != 1 || tenants[0].SyncError != "" || tenants[0].LastSyncAt.IsZero() {
		t.Fatalf("tenants after a sync: %+v, %v", tenants, err)
	}
	page, err := c.Devices(ctx, tenant, store.DeviceQuery{Limit: 100})
	if err != nil || len(page.Devices) != 60 {
		t.Fatalf("devices over the socket: %d, %v", len(page.Devices), err)
	}
}
