package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rekeyd/rekey/store"
)

func serials(devs []store.Device) []string {
	out := make([]string, len(devs))
	for i, d := range devs {
		out[i] = d.Serial
	}
	return out
}

func TestSyncPassStoresPagesAndMarksUnseenDevicesReleased(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	ten, _ := addTenant(t, s, "A")
	// An earlier pass knew three devices.
	if _, err := s.BeginPass(ctx, ten.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SyncPage(ctx, ten.ID, []store.Device{{Serial: "A"}, {Serial: "B"}, {Serial: "GONE"}}, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.EndPass(ctx, ten.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	got, err := s.BeginPass(ctx, ten.ID)
	if err != nil || got.SyncPassStartedAt.IsZero() || got.SyncCursor != "" || got.SyncListed {
		t.Fatalf("new pass: %+v, %v", got, err)
	}
	if n, err := s.SyncPage(ctx, ten.ID, []store.Device{{Serial: "A"}}, "page-2"); err != nil || n != 0 {
		t.Fatalf("first page: released %d, %v", n, err)
	}
	got, _ = s.Tenant(ctx, ten.ID)
	if got.SyncCursor != "page-2" || got.SyncListed {
		t.Fatalf("after page 1: cursor %q listed %v", got.SyncCursor, got.SyncListed)
	}
	// A resumed pass keeps where it was.
	if again, _ := s.BeginPass(ctx, ten.ID); again.SyncCursor != "page-2" || !again.SyncPassStartedAt.Equal(got.SyncPassStartedAt) {
		t.Fatalf("resumed pass %+v, want cursor page-2 from %v", again, got.SyncPassStartedAt)
	}
	n, err := s.SyncPage(ctx, ten.ID, []store.Device{{Serial: "B"}, {Serial: "C"}}, "")
	if err != nil || n != 1 {
		t.Fatalf("last page: released %d, %v; want 1", n, err)
	}
	got, _ = s.Tenant(ctx, ten.ID)
	if !got.SyncListed || got.SyncCursor != "" {
		t.Fatalf("after the last page: %+v", got)
	}
	want := store.TenantCounts{Devices: 4, Released: 1, Unknown: 3}
	if got.Counts != want {
		t.Fatalf("counts %+v, want %+v", got.Counts, want)
	}
	gone, _, _ := s.ListDevices(ctx, ten.ID, store.DeviceQuery{Released: store.ReleasedOnly})
	if len(gone) != 1 || gone[0].Serial != "GONE" || gone[0].ReleasedAt.IsZero() {
		t.Fatalf("released devices %+v", gone)
	}
	// A released device that comes back is in the organisation again.
	if _, err := s.SyncPage(ctx, ten.ID, []store.Device{{Serial: "GONE"}}, "x"); err != nil {
		t.Fatal(err)
	}
	if back, _, _ := s.ListDevices(ctx, ten.ID, store.DeviceQuery{Released: store.ReleasedOnly}); len(back) != 0 {
		t.Fatalf("device back in the list still released: %+v", back)
	}
	mustHealthy(t, s)
}

func TestCoverageStateComesFromTheRecords(t *testing.T) {
	s, _, clk := openStore(t)
	ctx := context.Background()
	ten, _ := addTenant(t, s, "A")
	if err := s.UpsertDevices(ctx, ten.ID, []store.Device{{Serial: "ACT"}, {Serial: "EXP"}, {Serial: "NONE"},
		{Serial: "OPEN"}, {Serial: "FAIL"}, {Serial: "NEVER"}, {Serial: "ENDED"}}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	cov := []store.DeviceCoverage{
		{Serial: "ACT", Records: []store.Coverage{
			{ID: "w", Status: "INACTIVE", EndDate: "2025-01-01T00:00:00Z"},
			{ID: "AGR1", Status: "ACTIVE", EndDate: "2028-03-01T00:00:00Z", PaymentType: "PAID_UP_FRONT", AgreementNumber: "AGR1", IsRenewable: true}}},
		{Serial: "EXP", Records: []store.Coverage{{ID: "AGR1", Status: "INACTIVE", EndDate: "2029-01-01T00:00:00Z"}}},
		{Serial: "NONE", Records: []store.Coverage{}},
		{Serial: "OPEN", Records: []store.Coverage{{ID: "s", Status: "ACTIVE", PaymentType: "ABE_SUBSCRIPTION", EndDate: ""},
			{ID: "w", Status: "INACTIVE", EndDate: "2025-01-01T00:00:00Z"}}},
		{Serial: "ENDED", Records: []store.Coverage{{ID: "w", Status: "ACTIVE", EndDate: "2020-01-01T00:00:00Z"}}},
		{Serial: "FAIL", Failed: true},
	}
	if err := s.UpsertCoverage(ctx, ten.ID, cov); err != nil {
		t.Fatal(err)
	}
	devs, _, err := s.Devices(ctx, ten.ID, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]store.Device{}
	for _, d := range devs {
		by[d.Serial] = d
	}
	for serial, want := range map[string]string{"ACT": "active", "EXP": "expired", "NONE": "none", "OPEN": "active",
		"ENDED": "expired", "FAIL": "unknown", "NEVER": "unknown"} {
		if got := by[serial].CoverageState; got != want {
			t.Errorf("%s: state %q, want %q", serial, got, want)
		}
	}
	if e := by["ACT"].CoverageEnd; !e.Equal(time.Date(2028, 3, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("ACT latest end %v, want 2028-03-01", e)
	}
	if e := by["OPEN"].CoverageEnd; !e.IsZero() {
		t.Errorf("open-ended subscription: end %v, want none", e)
	}
	if by["FAIL"].CoverageCheckedAt.IsZero() || !by["NEVER"].CoverageCheckedAt.IsZero() {
		t.Errorf("checked at: FAIL %v, NEVER %v", by["FAIL"].CoverageCheckedAt, by["NEVER"].CoverageCheckedAt)
	}
	// The same agreement id on two devices is two records: neither moves.
	if a, e := by["ACT"].Coverage, by["EXP"].Coverage; len(a) != 2 || len(e) != 1 || e[0].ID != "AGR1" || a[0].ID != "AGR1" {
		t.Fatalf("shared id: ACT %+v, EXP %+v", a, e)
	}
	if c := by["ACT"].Coverage[0]; c.PaymentType != "PAID_UP_FRONT" || !c.IsRenewable || c.AgreementNumber != "AGR1" {
		t.Errorf("record fields %+v", c)
	}
	ten, _ = s.Tenant(ctx, ten.ID)
	want := store.TenantCounts{Devices: 7, Coverage: 6, Active: 2, Expired: 2, None: 1, Unknown: 2}
	if ten.Counts != want {
		t.Errorf("counts %+v, want %+v", ten.Counts, want)
	}
	// A failed read keeps the records it had.
	if err := s.UpsertCoverage(ctx, ten.ID, []store.DeviceCoverage{{Serial: "ACT", Failed: true}}); err != nil {
		t.Fatal(err)
	}
	if d, _, _ := s.Devices(ctx, ten.ID, "", 1); d[0].CoverageState != "unknown" || len(d[0].Coverage) != 2 {
		t.Errorf("after a failed read: %+v", d[0])
	}
	mustHealthy(t, s)
}

func TestListDevicesFilters(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	ten, _ := addTenant(t, s, "A")
	var devs []store.Device
	for i := range 30 {
		devs = append(devs, store.Device{Serial: fmt.Sprintf("C02%03d", i)})
	}
	devs = append(devs, store.Device{Serial: "F9X001"})
	if err := s.UpsertDevices(ctx, ten.ID, devs); err != nil {
		t.Fatal(err)
	}
	var cov []store.DeviceCoverage
	for i := range 10 {
		end := time.Date(2027, 1, 1+i, 0, 0, 0, 0, time.UTC).Format(time.RFC3339)
		cov = append(cov, store.DeviceCoverage{Serial: fmt.Sprintf("C02%03d", i),
			Records: []store.Coverage{{ID: "w", Status: "ACTIVE", EndDate: end}}})
	}
	cov = append(cov, store.DeviceCoverage{Serial: "C02010", Records: []store.Coverage{}})
	if err := s.UpsertCoverage(ctx, ten.ID, cov); err != nil {
		t.Fatal(err)
	}
	count := func(q store.DeviceQuery) int {
		t.Helper()
		n := 0
		for {
			page, next, err := s.ListDevices(ctx, ten.ID, q)
			if err != nil {
				t.Fatal(err)
			}
			n += len(page)
			if next == "" {
				return n
			}
			q.After = next
		}
	}
	for name, c := range map[string]struct {
		q    store.DeviceQuery
		want int
	}{
		"all":          {store.DeviceQuery{Limit: 7}, 31},
		"active":       {store.DeviceQuery{Coverage: "active", Limit: 3}, 10},
		"none":         {store.DeviceQuery{Coverage: "none"}, 1},
		"unknown":      {store.DeviceQuery{Coverage: "unknown"}, 20},
		"end before":   {store.DeviceQuery{EndBefore: time.Date(2027, 1, 4, 0, 0, 0, 0, time.UTC)}, 3},
		"prefix":       {store.DeviceQuery{SerialPrefix: "C02", Limit: 4}, 30},
		"prefix other": {store.DeviceQuery{SerialPrefix: "F9"}, 1},
		"in org":       {store.DeviceQuery{Released: store.ReleasedExclude}, 31},
	} {
		if got := count(c.q); got != c.want {
			t.Errorf("%s: %d devices, want %d", name, got, c.want)
		}
	}
	for _, q := range []store.DeviceQuery{{Coverage: "covered"}, {Released: "maybe"}} {
		if _, _, err := s.ListDevices(ctx, ten.ID, q); !errors.Is(err, store.ErrBadQuery) {
			t.Errorf("query %+v: %v, want ErrBadQuery", q, err)
		}
	}
}

func TestCoverageDueOrder(t *testing.T) {
	s, _, clk := openStore(t)
	ctx := context.Background()
	ten, _ := addTenant(t, s, "A")
	if err := s.UpsertDevices(ctx, ten.ID, []store.Device{{Serial: "OLD"}, {Serial: "NEWER"}, {Serial: "SOON"},
		{Serial: "UNK"}, {Serial: "NEVER"}, {Serial: "GONE", ReleasedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	now := clk.Now()
	far := now.AddDate(3, 0, 0).Format(time.RFC3339)
	soon := now.AddDate(0, 1, 0).Format(time.RFC3339)
	write := func(dc store.DeviceCoverage) {
		t.Helper()
		if err := s.UpsertCoverage(ctx, ten.ID, []store.DeviceCoverage{dc}); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Hour)
	}
	write(store.DeviceCoverage{Serial: "OLD", Records: []store.Coverage{{ID: "a", Status: "ACTIVE", EndDate: far}}})
	write(store.DeviceCoverage{Serial: "UNK", Failed: true})
	write(store.DeviceCoverage{Serial: "SOON", Records: []store.Coverage{{ID: "a", Status: "ACTIVE", EndDate: soon}}})
	write(store.DeviceCoverage{Serial: "NEWER", Records: []store.Coverage{}})
	// A pass reads the whole list; its last page ranks the devices.
	pass, err := s.BeginPass(ctx, ten.ID)
	if err != nil {
		t.Fatal(err)
	}
	since := pass.SyncPassStartedAt
	if _, err := s.SyncPage(ctx, ten.ID, []store.Device{{Serial: "OLD"}, {Serial: "NEWER"}, {Serial: "SOON"},
		{Serial: "UNK"}, {Serial: "NEVER"}, {Serial: "GONE", ReleasedAt: time.Now()}}, ""); err != nil {
		t.Fatal(err)
	}
	due, err := s.CoverageDue(ctx, ten.ID, since, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(serials(due)), "[NEVER UNK SOON OLD NEWER]"; got != want {
		t.Fatalf("refresh order %s, want %s", got, want)
	}
	if page, _ := s.CoverageDue(ctx, ten.ID, since, due[1].RefreshRank, 2); fmt.Sprint(serials(page)) != "[SOON OLD]" {
		t.Fatalf("the page after UNK: %v", serials(page))
	}
	// Devices read since the pass began are not due again.
	write(store.DeviceCoverage{Serial: "NEVER", Records: []store.Coverage{}})
	if due, _ := s.CoverageDue(ctx, ten.ID, since, 0, 10); fmt.Sprint(serials(due)) != "[UNK SOON OLD NEWER]" {
		t.Fatalf("after reading NEVER in this pass: %v", serials(due))
	}
	f, err := s.CoverageFreshness(ctx, ten.ID, since)
	if err != nil || f.Never != 0 || f.Stale != 4 || f.OldestCheck.IsZero() {
		t.Fatalf("freshness %+v, %v", f, err)
	}
}

func TestCheckReportsCounterDriftAndRecountRepairsIt(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	ten, _ := addTenant(t, s, "A")
	if err := s.UpsertDevices(ctx, ten.ID, []store.Device{{Serial: "A"}, {Serial: "B"}}); err != nil {
		t.Fatal(err)
	}
	mustHealthy(t, s)
	if err := s.ExecRaw(ctx, `UPDATE tenants SET device_count = 7, unknown_count = 0`); err != nil {
		t.Fatal(err)
	}
	probs, err := s.Check(ctx, 0)
	if err != nil || len(probs) != 2 || probs[0].Check != "counter" || probs[0].Subject != ten.ID {
		t.Fatalf("problems %+v, %v; want two counter problems", probs, err)
	}
	if err := s.Recount(ctx); err != nil {
		t.Fatal(err)
	}
	mustHealthy(t, s)
	if err := s.ExecRaw(ctx, `DELETE FROM devices`); !errors.Is(err, store.ErrInvariant) {
		t.Fatalf("deleting devices: %v, want refused", err)
	}
}

func TestLastPageWithoutPassIsRefused(t *testing.T) {
	s, _, _ := openStore(t)
	ten, _ := addTenant(t, s, "A")
	if _, err := s.SyncPage(context.Background(), ten.ID, []store.Device{{Serial: "A"}}, ""); !errors.Is(err, store.ErrState) {
		t.Fatalf("last page without a pass: %v, want ErrState", err)
	}
}
