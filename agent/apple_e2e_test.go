package agent_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// sleepClock is a clock that the Apple client's waits move forward instead
// of sleeping: the agent, its store, its Apple client and the fake share it,
// so Apple's real rates (20 requests a minute, Retry-After of minutes) play
// out without a test waiting for them.
type sleepClock struct {
	testClock // Now and Add; mu guards waits too
	waits     []time.Duration
}

func newSleepClock() *sleepClock { return &sleepClock{testClock: testClock{now: time.Now().UTC()}} }

func (c *sleepClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.now = c.now.Add(d)
	if d >= time.Second {
		c.waits = append(c.waits, d)
	}
	c.mu.Unlock()
	return ctx.Err()
}

func (c *sleepClock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.waits)
}

// appleLike runs the agent against the fake at Apple's pace: the adaptive
// budget, on a clock that the waits move.
func appleLike(clk *sleepClock, ticks chan time.Time) func(*agent.Config) {
	return func(c *agent.Config) {
		c.AppleRequestsPerMinute = 0
		if clk != nil {
			c.Clock, c.AppleSleep = clk, clk.Sleep
		}
		if ticks != nil {
			c.SyncTicks = ticks
		}
	}
}

// addTenant pushes an add with syncing left to the test and returns the
// tenant id; h.last is the entry pushed.
func addTenant(t testing.TB, h *harness, devices int) string {
	t.Helper()
	h.apple.SetDevices(devices)
	h.settings[payload.KeySyncInterval] = "0"
	h.last = h.entry("Acme", payload.IntentAdd, "", h.key(""), testPassphrase)
	h.push(h.last)
	h.waitImport("", store.ImportApplied)
	return h.active("").TenantID
}

// wantAppleShapes checks every device of the tenant against the fake: its
// coverage state, its records (a shared agreement id on both devices), its
// open-ended subscription.
func wantAppleShapes(t testing.TB, st *store.Store, tenantID string, n int) {
	t.Helper()
	var devs []store.Device
	for q := (store.DeviceQuery{Limit: 1000}); ; {
		page, next, err := st.ListDevices(context.Background(), tenantID, q)
		if err != nil {
			t.Fatal(err)
		}
		devs = append(devs, page...)
		if q.After = next; next == "" {
			break
		}
	}
	if len(devs) != n {
		t.Fatalf("%d devices; want %d", len(devs), n)
	}
	for i, d := range devs {
		if d.CoverageState != appletest.CoverageState(i) || len(d.Coverage) != appletest.CoverageCount(i) || d.CoverageCheckedAt.IsZero() {
			t.Fatalf("device %d: state %q with %d records, want %q with %d", i, d.CoverageState, len(d.Coverage),
				appletest.CoverageState(i), appletest.CoverageCount(i))
		}
		for j, c := range d.Coverage {
			if !slices.ContainsFunc(d.Coverage, func(c store.Coverage) bool { return c.ID == appletest.CoverageID(i, j) }) {
				t.Fatalf("device %d lacks record %s: %+v", i, appletest.CoverageID(i, j), c)
			}
		}
		if i%4 == 3 && (!d.CoverageEnd.IsZero() || d.Coverage[0].EndDate != "" || d.Coverage[0].PaymentType != "ABE_SUBSCRIPTION") {
			t.Fatalf("subscription of device %d: end %v, %+v; want open-ended", i, d.CoverageEnd, d.Coverage[0])
		}
	}
	ten, _ := st.Tenant(context.Background(), tenantID)
	if ten.Counts.Coverage != appletest.CoverageTotal(n) {
		t.Fatalf("%d coverage records, want %d", ten.Counts.Coverage, appletest.CoverageTotal(n))
	}
}

func TestSyncAtApplesPaceWaitsOutEvery429(t *testing.T) {
	clk := newSleepClock()
	h := newHarness(t, appleLike(clk, nil))
	h.apple.SetClock(clk)
	h.apple.SetRateLimit(10, 2) // slower than the budget's start: it must back off
	tenant := addTenant(t, h, 60)
	// One answer asks for five minutes, longer than the old one-minute cap.
	h.apple.Fail(appletest.Fault{Endpoint: appletest.CoverageEndpoint, Mode: appletest.RateLimited, RetryAfter: "300", Skip: 10})
	if err := h.agent.SyncTenant(context.Background(), tenant); err != nil {
		t.Fatalf("sync: %v", err)
	}
	st := h.apple.Stats()
	if st.DeviceRequests != 1 || st.Throttled == 0 || st.APIRequests-st.Throttled != 61 {
		t.Fatalf("fake saw %+v; want one page of 60, some 429s, 60 coverage answers", st)
	}
	if !slices.Contains(clk.Waits(), 300*time.Second) {
		t.Fatalf("waits %v: want the full 300 s Retry-After", clk.Waits())
	}
	var last store.Event
	for len(h.events) > 0 {
		if e := <-h.events; e.Kind == store.EvSyncProgress {
			last = e
		}
	}
	if r, _ := strconv.ParseFloat(last.Fields["rate_per_minute"], 64); r >= apple.DefaultStartRate || r == 0 {
		t.Fatalf("budget rate %v after 429s, want below %v (%+v)", r, apple.DefaultStartRate, last)
	}
	wantAppleShapes(t, h.agent.Store(), tenant, 60)
	h.healthy()
}

func TestRetryAfterOverAnHourPausesTheSyncUntilThen(t *testing.T) {
	clk := newSleepClock()
	ticks := make(chan time.Time)
	h := newHarness(t, appleLike(clk, ticks))
	h.apple.SetClock(clk)
	tenant := addTenant(t, h, 30)
	h.apple.Fail(appletest.Fault{Endpoint: appletest.CoverageEndpoint, Mode: appletest.RateLimited, RetryAfter: "7200", Skip: 12})
	err := h.agent.SyncTenant(context.Background(), tenant)
	if !errors.Is(err, apple.ErrPaused) {
		t.Fatalf("sync: %v, want paused", err)
	}
	paused := h.waitFor("paused", isKind(store.EvSyncPaused))
	until, _ := time.Parse(time.RFC3339, paused.Fields["until"])
	if d := until.Sub(clk.Now()); d < 119*time.Minute || d > 121*time.Minute {
		t.Fatalf("paused until %v, %v from now; want two hours", until, d)
	}
	ten, _ := h.agent.Store().Tenant(context.Background(), tenant)
	if !ten.SyncPausedUntil.Truncate(time.Second).Equal(until) || ten.SyncPassStartedAt.IsZero() {
		t.Fatalf("tenant %+v", ten)
	}
	h.settings[payload.KeySyncInterval] = "24h" // syncs on ticks from now on
	h.push(h.last)
	h.waitFor("payload read", isKind(store.EvSourceRead))
	was := h.apple.Stats()
	tickHandled(ticks, clk.Now())
	noSyncSince(t, h, was)

	clk.Add(2*time.Hour + time.Minute)
	tickHandled(ticks, clk.Now())
	if e := h.waitFor("resumed", syncEnded(tenant)); e.Kind != store.EvSyncFinished {
		t.Fatalf("resumed sync: %+v", e)
	}
	if got := h.apple.Stats().CoverageRequests; got != 31 {
		t.Fatalf("%d coverage requests for 30 devices and one 429; a device was read twice", got)
	}
	wantAppleShapes(t, h.agent.Store(), tenant, 30)
	h.healthy()
}

func TestRefusedCursorRestartsTheListAndSaysSo(t *testing.T) {
	h := newHarness(t, instantRetries)
	tenant := addTenant(t, h, 1500)
	// The second page keeps failing: the first is stored with its cursor.
	h.apple.Fail(appletest.Fault{Endpoint: appletest.DevicesEndpoint, Mode: appletest.ServerError, Times: -1, Skip: 1})
	if err := h.agent.SyncTenant(context.Background(), tenant); !errors.Is(err, apple.ErrUnreachable) {
		t.Fatalf("sync: %v", err)
	}
	ten, _ := h.agent.Store().Tenant(context.Background(), tenant)
	if ten.SyncCursor == "" || ten.Counts.Devices != 1000 {
		t.Fatalf("after the failure: cursor %q, %d devices", ten.SyncCursor, ten.Counts.Devices)
	}
	h.apple.ClearFaults()
	h.apple.ExpireCursors()
	if err := h.agent.SyncTenant(context.Background(), tenant); err != nil {
		t.Fatalf("sync with an expired cursor: %v", err)
	}
	restarted := h.waitFor("restart", isKind(store.EvSyncRestarted))
	if restarted.Fields["apple_error_id"] == "" || restarted.TenantID != tenant {
		t.Fatalf("restart event %+v", restarted)
	}
	if e := h.waitFor("end", syncEnded(tenant)); e.Kind != store.EvSyncFinished || e.Fields["devices"] != "1500" {
		t.Fatalf("end %+v", e)
	}
	if st := h.apple.Stats(); st.CursorsRefused != 1 || st.CoverageRequests != 1500 {
		t.Fatalf("fake %+v: want one refused cursor and each device read once", st)
	}
	wantRecords(t, h.agent.Store(), tenant, 1500)
	// The next pass starts from the first page, not from the refused cursor.
	if err := h.agent.SyncTenant(context.Background(), tenant); err != nil {
		t.Fatal(err)
	}
	h.healthy()
}

func TestReleasedDevicesAreKeptMarkedAndComeBack(t *testing.T) {
	h := newHarness(t)
	tenant := addTenant(t, h, 20)
	ctx := context.Background()
	st := h.agent.Store()
	if err := h.agent.SyncTenant(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	h.apple.Release(3, 17)
	if err := h.agent.SyncTenant(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	if e := h.waitFor("second sync", func(e store.Event) bool { return e.Kind == store.EvSyncFinished && e.Fields["released"] != "0" }); e.Fields["newly_released"] != "2" || e.Fields["devices"] != "20" {
		t.Fatalf("finished %+v", e.Fields)
	}
	gone, _, err := st.ListDevices(ctx, tenant, store.DeviceQuery{Released: store.ReleasedOnly})
	if err != nil || len(gone) != 2 || gone[0].Serial != appletest.DeviceID(3) || gone[0].ReleasedAt.IsZero() || len(gone[0].Coverage) != appletest.CoverageCount(3) {
		t.Fatalf("released devices %+v, %v; want 3 and 17 with their history", gone, err)
	}
	if ten, _ := st.Tenant(ctx, tenant); ten.Counts.Released != 2 || ten.Counts.Devices != 20 {
		t.Fatalf("counts %+v", ten.Counts)
	}
	h.apple.Restore(3)
	if err := h.agent.SyncTenant(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	if gone, _, _ := st.ListDevices(ctx, tenant, store.DeviceQuery{Released: store.ReleasedOnly}); len(gone) != 1 || gone[0].Serial != appletest.DeviceID(17) {
		t.Fatalf("after device 3 came back: released %+v", gone)
	}
	h.healthy()
}

func TestCoverageRefreshOrder(t *testing.T) {
	clk := newSleepClock()
	h := newHarness(t, appleLike(clk, nil))
	h.apple.SetClock(clk)
	h.settings[payload.KeyRequestsPerMinute] = "6" // one worker: the order shows in the requests
	tenant := addTenant(t, h, 12)
	h.apple.Fail(appletest.Fault{Endpoint: appletest.CoverageEndpoint, Mode: appletest.NotFound, DeviceID: appletest.DeviceID(5)})
	if err := h.agent.SyncTenant(context.Background(), tenant); err != nil {
		t.Fatal(err)
	}
	h.apple.SetDevices(14) // two new devices, never read
	clk.Add(48 * time.Hour)
	before := len(h.apple.CoverageLog())
	if err := h.agent.SyncTenant(context.Background(), tenant); err != nil {
		t.Fatal(err)
	}
	log := h.apple.CoverageLog()[before:]
	if len(log) != 14 || log[0] != appletest.DeviceID(12) || log[1] != appletest.DeviceID(13) || log[2] != appletest.DeviceID(5) {
		t.Fatalf("second pass read %v; want the two new devices, then the one whose read failed, then the rest", log)
	}
	h.healthy()
}

func TestClockSkewIsUnreachableNeverRejected(t *testing.T) {
	h := newHarness(t)
	h.noSync()
	old := h.key("")
	h.push(withID("a", h.entry("Acme", payload.IntentAdd, "", old, testPassphrase)))
	h.waitImport("a", store.ImportApplied)
	// The token endpoint's clock is twenty minutes ahead of ours.
	h.apple.SetClock(laterClock{20 * time.Minute})
	next := h.key(old.ClientID)
	h.push(withID("a", h.entry("Acme", payload.IntentAdd, "", old, testPassphrase)),
		withID("b", h.entry("Acme 2027", payload.IntentUpdate, "Acme", next, testPassphrase)))
	check := h.waitFor("auth check", isKind(store.EvAuthCheck))
	if check.Fields["outcome"] != "unreachable" || !strings.Contains(check.Message, "system clock is off by 20m0s") ||
		check.Fields["clock_skew"] == "" {
		t.Fatalf("auth check %+v", check)
	}
	imp := h.waitImport("b", store.ImportApplied) // best-effort goes on: the key is good
	if c := h.active(imp.TenantID); c.KeyID != next.KeyID {
		t.Fatalf("active %+v, want the new key", c)
	}
	h.healthy()
}

func TestAppleErrorIDReachesTheImportReason(t *testing.T) {
	h := newHarness(t, instantRetries)
	h.noSync()
	h.settings[payload.KeyAuthCheck] = payload.AuthRequired
	h.apple.Fail(appletest.Fault{Endpoint: appletest.TokenEndpoint, Mode: appletest.ServerError, Times: -1})
	h.push(withID("a", h.entry("Acme", payload.IntentAdd, "", h.key(""), testPassphrase)))
	imp := h.waitImport("a", store.ImportFailed)
	if !strings.Contains(imp.Reason, "Apple error id ") {
		t.Fatalf("import reason %q: want Apple's error id", imp.Reason)
	}
}

// laterClock is the real clock moved by d.
type laterClock struct{ d time.Duration }

func (l laterClock) Now() time.Time { return time.Now().Add(l.d) }
