package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/agent/source"
	"github.com/rekeyd/rekey/store"
)

// envInt reads a benchmark size from the environment, or def.
func envInt(tb testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		tb.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// BenchmarkPushToCutoverEvent measures, at the default Debounce and Settle,
// the time from the rename that puts a payload in place (the temporary file
// already written and synced, as an MDM agent does) to the cut-over event
// arriving on GET /v1/events over the agent's socket: watch, read, parse,
// record, decrypt (work factor 10), decide, stage, auth check (the local
// fake of Apple when on), validate and cut over. After each push the same
// run times the floor: a rename into a folder watched by a bare fsnotify
// watcher until its event arrives. REKEY_PUSHES pushes (default 300) per
// run, whatever b.N is; run it with -benchtime 1x.
func BenchmarkPushToCutoverEvent(b *testing.B) {
	for _, auth := range []string{payload.AuthOff, payload.AuthBestEffort} {
		b.Run("auth="+auth, func(b *testing.B) { benchPushEvent(b, auth) })
	}
}

func benchPushEvent(b *testing.B, auth string) {
	h := newHarness(b, func(c *agent.Config) { c.Debounce, c.Settle = source.DefaultDebounce, source.DefaultSettle }).noSync()
	h.settings[payload.KeyAuthCheck] = auth
	first := h.key("")
	h.push(withID("bench-0", h.entry("Bench", payload.IntentAdd, "", first, testPassphrase)))
	h.untilImport("bench-0", store.ImportApplied)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := waitAPI(b, h.socket).Events(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer stream.Close()
	cuts := make(chan string, 64)
	go func() {
		defer close(cuts)
		for {
			e, err := stream.Next()
			if err != nil {
				return
			}
			if e.Kind == store.EvRotationCutover {
				cuts <- e.ImportID
			}
		}
	}()
	floor := newFloor(b, filepath.Join(h.dir, "floor"))

	pushes := envInt(b, "REKEY_PUSHES", 300)
	lat := make([]time.Duration, 0, pushes)
	floors := make([]time.Duration, 0, pushes)
	b.ResetTimer()
	for i := 1; i <= pushes; i++ {
		b.StopTimer()
		id := "bench-" + strconv.Itoa(i)
		e := withID(id, h.entry("Bench", payload.IntentUpdate, "bench", h.key(first.ClientID), testPassphrase))
		doc, err := payload.MarshalPayload([]payload.PayloadEntry{e}, h.settings)
		if err != nil {
			b.Fatal(err)
		}
		tmp := writeSynced(b, h.prefs, doc)
		b.StartTimer()
		start := time.Now()
		if err := os.Rename(tmp, h.payloadPath()); err != nil {
			b.Fatal(err)
		}
		waitCut(b, cuts, id)
		lat = append(lat, time.Since(start))
		b.StopTimer()
		floors = append(floors, floor.once(b))
	}
	report(b, "", lat)
	report(b, "floor-", floors)
	h.healthy()
}

// report adds p50, p95 and max of lat as metrics named with prefix.
func report(b *testing.B, prefix string, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(ms(lat[len(lat)/2]), prefix+"p50-ms")
	b.ReportMetric(ms(lat[len(lat)*95/100]), prefix+"p95-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), prefix+"max-ms")
}

func waitCut(b *testing.B, cuts <-chan string, id string) {
	b.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case got, ok := <-cuts:
			if !ok {
				b.Fatal("event stream ended")
			}
			if got == id {
				return
			}
		case <-deadline:
			b.Fatalf("no cut-over of %s within 30 s", id)
		}
	}
}

// writeSynced writes data to a new temporary file in dir (a name the
// watcher ignores), synced and closed, mode 0644, and returns its path.
func writeSynced(tb testing.TB, dir string, data []byte) string {
	tb.Helper()
	f, err := os.CreateTemp(dir, ".bench-*")
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := f.Chmod(0o644); err != nil {
		tb.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return f.Name()
}

// floor times a rename into a folder that a bare fsnotify watcher watches.
type floor struct {
	dir    string
	target string
	w      *fsnotify.Watcher
}

func newFloor(b *testing.B, dir string) *floor {
	b.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.Close() })
	if err := w.Add(dir); err != nil {
		b.Fatal(err)
	}
	return &floor{dir: dir, target: filepath.Join(dir, "payload.plist"), w: w}
}

func (f *floor) once(b *testing.B) time.Duration {
	b.Helper()
	tmp := writeSynced(b, f.dir, []byte("<plist/>\n"))
	start := time.Now()
	if err := os.Rename(tmp, f.target); err != nil {
		b.Fatal(err)
	}
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev := <-f.w.Events:
			if ev.Name == f.target && ev.Has(fsnotify.Create) {
				return time.Since(start)
			}
		case err := <-f.w.Errors:
			b.Fatal(err)
		case <-deadline:
			b.Fatal("no event for the floor rename within 30 s")
		}
	}
}

// BenchmarkMillionDevices builds a tenant of REKEY_BENCH_DEVICES devices
// (default 1,000,000; three in four with a coverage record) once, straight
// into the agent's store through the bulk upsert of a sync page, then
// measures GET /v1/tenants/{id}/devices pages of 1,000 devices at random
// cursors over the socket (REKEY_PAGES of them), and b.N GET /v1/status
// from 200 clients while the tenant is rotated in a loop (no sync after a
// rotation).
func BenchmarkMillionDevices(b *testing.B) {
	n := envInt(b, "REKEY_BENCH_DEVICES", 1_000_000)
	h := newHarness(b).noSync()
	first := h.key("")
	add := withID("bench-add", h.entry("Acme r0", payload.IntentAdd, "", first, testPassphrase))
	h.push(add)
	h.waitImport(add.ImportID, store.ImportApplied)
	tenant := h.active("").TenantID
	start := time.Now()
	fillDevices(b, h.agent.Store(), tenant, n)
	b.Logf("%d devices stored in %v", n, time.Since(start).Round(time.Millisecond))
	waitAPI(b, h.socket)
	millionDevices(b, h.benchAgent(), tenant, first.ClientID, n, true)
}

// millionDevices measures device pages and status on a's tenant of n
// devices (BenchmarkMillionDevices): pages of 1,000 with each filter, then
// status from 200 clients while the tenant, named "Acme r0" with the
// credential of clientID, is rotated in a loop. behind says the devices
// were stored behind the agent's back, which its status counts only after
// a change: the status runs then wait for the first rotation.
func millionDevices(b *testing.B, a benchAgent, tenant, clientID string, n int, behind bool) {
	for _, f := range []struct{ name, query string }{
		{"none", ""},
		{"coverage=active", "&coverage=active&released=exclude"},   // three devices in four
		{"coverage=unknown", "&coverage=unknown&released=exclude"}, // one in four: a page spans 4,000 serials
		{"end_before", "&end_before=2029-01-01"},
	} {
		b.Run("devices/limit=1000/filter="+f.name, func(b *testing.B) { devicePages(b, a.socket, tenant, n, f.query, 1000) })
	}

	loop := startRotations(b, a, clientID, 0)
	defer func() {
		if err := loop.stop(); err != nil {
			b.Errorf("rotation loop: %v", err)
		}
	}()
	if behind {
		select {
		case <-loop.first:
		case <-time.After(2 * time.Minute):
			b.Fatal("no rotation applied within two minutes")
		}
	}
	b.Run("status/clients=200", func(b *testing.B) {
		measureRotating(b, a, loop, func(b *testing.B) time.Duration { return statusLoad(b, a.socket, 200) })
	})
	b.Run("status/paced/clients=200/rate=20000", func(b *testing.B) {
		measureRotating(b, a, loop, func(b *testing.B) time.Duration { return statusPaced(b, a.socket, 200, 20000) })
	})
}

// benchSerial is the serial of device i of a benchmark tenant: sortable.
func benchSerial(i int) string { return fmt.Sprintf("C%09d", i) }

// benchDeviceAttrs and benchCoverageAttrs are the attributes a sync keeps
// with each device and record: all of them, as Apple sends them (the fake
// of Apple's shapes; %s the serial, %d an order number).
const (
	benchDeviceAttrs = `{"serialNumber":"%s","addedToOrgDateTime":"2025-04-30T22:05:14.192Z","releasedFromOrgDateTime":null,` +
		`"updatedDateTime":"2025-05-01T15:33:54.164Z","deviceModel":"MacBook Pro (14-inch, 2024)","productFamily":"Mac",` +
		`"productType":"Mac16,1","deviceCapacity":"512GB","partNumber":"FD311LL/A","orderNumber":"%d","color":"SILVER",` +
		`"status":"ASSIGNED","orderDateTime":"2024-08-15T07:00:00Z","imei":[],"meid":[],"eid":"","purchaseSourceId":"1234567",` +
		`"purchaseSourceType":"APPLE"}`
	benchCoverageAttrs = `{"agreementNumber":"cov-%s","contractCancelDateTime":null,"description":"AppleCare+",` +
		`"endDateTime":"2028-01-01T00:00:00Z","isCanceled":false,"isRenewable":true,"paymentType":"PAID_UP_FRONT",` +
		`"startDateTime":"2025-01-01T00:00:00Z","status":"ACTIVE"}`
)

// fillDevices stores n devices for tenantID, 5,000 to a transaction, each
// with the attributes a sync from Apple keeps.
func fillDevices(b *testing.B, st *store.Store, tenantID string, n int) {
	b.Helper()
	const page = 5000
	ctx := context.Background()
	for start := 0; start < n; start += page {
		devs := make([]store.Device, 0, page)
		var dcs []store.DeviceCoverage
		for i := start; i < min(start+page, n); i++ {
			serial := benchSerial(i)
			devs = append(devs, store.Device{Serial: serial, AppleID: serial, Model: "MacBook Pro (14-inch, 2024)",
				ProductFamily: "Mac", Status: "ASSIGNED", Attrs: json.RawMessage(fmt.Sprintf(benchDeviceAttrs, serial, 1000000+i))})
			if i%4 != 0 {
				dcs = append(dcs, store.DeviceCoverage{Serial: serial, Records: []store.Coverage{{ID: "cov-" + serial,
					Serial: serial, Description: "AppleCare+", Status: "ACTIVE", PaymentType: "PAID_UP_FRONT", IsRenewable: true,
					AgreementNumber: "cov-" + serial, StartDate: "2025-01-01T00:00:00Z", EndDate: "2028-01-01T00:00:00Z",
					Attrs: json.RawMessage(fmt.Sprintf(benchCoverageAttrs, serial))}}})
			}
		}
		if err := st.UpsertDevices(ctx, tenantID, devs); err != nil {
			b.Fatal(err)
		}
		if err := st.UpsertCoverage(ctx, tenantID, dcs); err != nil {
			b.Fatal(err)
		}
	}
}

// devicePages reads REKEY_PAGES pages (default 2,000, whatever b.N is) of
// up to 1,000 devices matching filter after random serials and reports p50
// and p99. Like statusLoad it reads each answer whole without decoding it
// (the first one is decoded and checked to hold want devices).
func devicePages(b *testing.B, sock, tenantID string, n int, filter string, want int) {
	c, err := dialRaw(sock)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	pages := envInt(b, "REKEY_PAGES", 2000)
	lat := make([]time.Duration, 0, pages)
	var body bytes.Buffer
	b.ResetTimer()
	for i := range pages {
		after := benchSerial(rng.IntN(max(n-4000, 1)))
		path := "/v1/tenants/" + tenantID + "/devices?limit=1000&after=" + after + filter
		body.Reset()
		t := time.Now()
		resp, err := c.get(path, &body)
		lat = append(lat, time.Since(t))
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %v, %v", path, resp, err)
		}
		if i == 0 {
			var page api.DevicePage
			if err := json.Unmarshal(body.Bytes(), &page); err != nil || len(page.Devices) != min(want, n) {
				b.Fatalf("page of %s holds %d devices (%v), want %d", path, len(page.Devices), err, want)
			}
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
}
