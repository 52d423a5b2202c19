package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rekeyd/rekey/store"
)

// TestStreamDevicesMatchesOneDeviceAtATime pages a tenant whose devices
// hold zero to four coverage records (so records cross the store's batch
// and chunk boundaries) with every filter and page sizes from 1 to 1,000,
// and compares each walk with the walk one device per page. It also checks
// the batches: in serial order, at most 100 devices, together the page.
func TestStreamDevicesMatchesOneDeviceAtATime(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	_, c := addTenant(t, s, "Acme")
	r := rand.New(rand.NewPCG(3, 5))
	const n = 1500
	devs := make([]store.Device, n)
	var dcs []store.DeviceCoverage
	records := map[string]int{}
	for i := range devs {
		serial := fmt.Sprintf("S%05d", i)
		devs[i] = store.Device{Serial: serial, Model: "Mac14,2", Status: "ASSIGNED"}
		k := r.IntN(5)
		if k == 0 && r.IntN(2) == 0 {
			continue // never read: unknown
		}
		dc := store.DeviceCoverage{Serial: serial, Records: []store.Coverage{}}
		for j := range k {
			end := time.Date(2024+r.IntN(6), time.Month(1+r.IntN(12)), 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339)
			dc.Records = append(dc.Records, store.Coverage{ID: fmt.Sprintf("cov-%s-%d", serial, j), Serial: serial,
				Description: "AppleCare+", Status: []string{"ACTIVE", "INACTIVE"}[r.IntN(2)],
				StartDate: "2023-01-01T00:00:00Z", EndDate: end})
		}
		records[serial] = k
		dcs = append(dcs, dc)
	}
	if err := s.UpsertDevices(ctx, c.TenantID, devs); err != nil {
		t.Fatal(err)
	}
	if err := s.UpsertCoverage(ctx, c.TenantID, dcs); err != nil {
		t.Fatal(err)
	}

	walk := func(q store.DeviceQuery) []store.Device {
		var all []store.Device
		for {
			var page []store.Device
			next, err := s.StreamDevices(ctx, c.TenantID, q, func(b []store.Device) error {
				if len(b) == 0 || len(b) > 100 {
					t.Fatalf("a batch of %d devices", len(b))
				}
				page = append(page, b...)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > max(q.Limit, 1) {
				t.Fatalf("limit %d: a page of %d", q.Limit, len(page))
			}
			all = append(all, page...)
			if next == "" {
				return all
			}
			if next != page[len(page)-1].Serial {
				t.Fatalf("next %q after a page ending at %q", next, page[len(page)-1].Serial)
			}
			q.After = next
		}
	}
	for _, filter := range []store.DeviceQuery{{}, {Coverage: store.CoverageActive}, {Coverage: store.CoverageUnknown},
		{Coverage: store.CoverageExpired, Released: store.ReleasedExclude}, {EndBefore: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
		{SerialPrefix: "S01"}} {
		one := filter
		one.Limit = 1
		want := walk(one)
		if len(want) == 0 {
			t.Fatalf("%+v matches no device", filter)
		}
		for _, d := range want {
			if len(d.Coverage) != records[d.Serial] {
				t.Fatalf("%s: %d records, stored %d", d.Serial, len(d.Coverage), records[d.Serial])
			}
		}
		for _, limit := range []int{7, 100, 333, 1000} {
			q := filter
			q.Limit = limit
			got := walk(q)
			if !slices.EqualFunc(got, want, func(a, b store.Device) bool {
				return a.Serial == b.Serial && slices.EqualFunc(a.Coverage, b.Coverage, func(x, y store.Coverage) bool { return x.ID == y.ID && x.EndDate == y.EndDate })
			}) {
				t.Fatalf("%+v limit %d: %d devices differ from the walk one by one (%d)", filter, limit, len(got), len(want))
			}
		}
	}

	// An error of emit stops the read and comes back.
	stop := errors.New("client gone")
	calls := 0
	if _, err := s.StreamDevices(ctx, c.TenantID, store.DeviceQuery{Limit: 1000}, func([]store.Device) error {
		calls++
		return stop
	}); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("emit failing: %v after %d calls; want its error after one", err, calls)
	}
	if _, err := s.StreamDevices(ctx, "ten_missing", store.DeviceQuery{}, func([]store.Device) error {
		t.Fatal("a batch for an unknown tenant")
		return nil
	}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown tenant: %v, want ErrNotFound", err)
	}
}

// TestAttributesAreStoredCompact: a device page sends stored attributes as
// they are, so the store keeps them compact and refuses what is not JSON.
func TestAttributesAreStoredCompact(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	_, c := addTenant(t, s, "Acme")
	spaced := json.RawMessage("{ \"color\" : \"SILVER\",\n \"imei\": [ ], \"note\": \"a  b\" }")
	if err := s.UpsertDevices(ctx, c.TenantID, []store.Device{{Serial: "S1", Attrs: spaced}}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpsertCoverage(ctx, c.TenantID, []store.DeviceCoverage{{Serial: "S1",
		Records: []store.Coverage{{ID: "c1", Serial: "S1", Status: "ACTIVE", Attrs: spaced}}}}); err != nil {
		t.Fatal(err)
	}
	devs, _, err := s.Devices(ctx, c.TenantID, "", 10)
	const want = `{"color":"SILVER","imei":[],"note":"a  b"}`
	if err != nil || len(devs) != 1 || string(devs[0].Attrs) != want || len(devs[0].Coverage) != 1 || string(devs[0].Coverage[0].Attrs) != want {
		t.Fatalf("stored attributes: %+v, %v; want %s on the device and its record", devs, err, want)
	}
	err = s.UpsertDevices(ctx, c.TenantID, []store.Device{{Serial: "S2", Attrs: json.RawMessage(`{"unterminated`)}})
	if !errors.Is(err, store.ErrInvariant) || !strings.Contains(err.Error(), "S2") || !strings.Contains(err.Error(), "not valid JSON") {
		t.Fatalf("attributes that are not JSON: %v; want ErrInvariant naming the device", err)
	}
}
