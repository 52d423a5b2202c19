package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestAppleMigrationKeepsEveryRowAndRecomputesCoverage opens a database
// written at schema version 1 and checks what 0002_apple makes of it.
func TestAppleMigrationKeepsEveryRowAndRecomputesCoverage(t *testing.T) {
	now := time.Now().UnixNano()
	dir := oldDatabase(t, 1,
		`INSERT INTO tenants (id, name, scope, created_at) VALUES ('ten_a', 'A', 'business.api', 1)`,
		`INSERT INTO devices (tenant_id, serial, coverage_state, updated_at, attrs) VALUES
			('ten_a', 'LIVE', 'covered', 5, '{"x":1}'), ('ten_a', 'OLD', 'covered', 5, NULL),
			('ten_a', 'EMPTY', 'none', 5, NULL), ('ten_a', 'NEW', 'unknown', 5, NULL), ('ten_a', 'SUB', 'covered', 5, NULL)`,
		`INSERT INTO coverage (tenant_id, id, serial, status, start_date, end_date, attrs, updated_at) VALUES
			('ten_a', 'w1', 'LIVE', 'ACTIVE', '2025-01-01T00:00:00Z', '2999-01-01T00:00:00Z',
			 '{"paymentType":"PAID_UP_FRONT","isRenewable":true,"agreementNumber":"AGR9"}', 5),
			('ten_a', 'w2', 'OLD', 'ACTIVE', '2019-01-01T00:00:00Z', '2020-01-01T00:00:00Z', NULL, 5),
			('ten_a', 'w3', 'OLD', 'INACTIVE', '', '2021-06-01T00:00:00Z', NULL, 5),
			('ten_a', 'w4', 'SUB', 'ACTIVE', '2025-01-01T00:00:00Z', '', '{"paymentType":"ABE_SUBSCRIPTION"}', 5)`)
	s, err := Open(dir, Options{Clock: fixedClock(time.Unix(0, now))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	devs, _, err := s.Devices(ctx, "ten_a", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 5 {
		t.Fatalf("%d devices after the migration, want 5", len(devs))
	}
	by := map[string]Device{}
	for _, d := range devs {
		by[d.Serial] = d
	}
	for serial, want := range map[string]string{"LIVE": "active", "OLD": "expired", "EMPTY": "none", "NEW": "unknown", "SUB": "active"} {
		if got := by[serial].CoverageState; got != want {
			t.Errorf("%s: %q, want %q", serial, got, want)
		}
	}
	if e := by["OLD"].CoverageEnd; !e.Equal(time.Date(2021, 6, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("OLD latest end %v", e)
	}
	if !by["SUB"].CoverageEnd.IsZero() || by["NEW"].CoverageCheckedAt.IsZero() == false || by["LIVE"].CoverageCheckedAt.IsZero() {
		t.Errorf("SUB end %v, NEW checked %v, LIVE checked %v", by["SUB"].CoverageEnd, by["NEW"].CoverageCheckedAt, by["LIVE"].CoverageCheckedAt)
	}
	if c := by["LIVE"].Coverage; len(c) != 1 || c[0].PaymentType != "PAID_UP_FRONT" || !c[0].IsRenewable || c[0].AgreementNumber != "AGR9" {
		t.Errorf("LIVE coverage %+v", c)
	}
	if c := by["OLD"].Coverage; len(c) != 2 || c[1].StartDate != "" {
		t.Errorf("OLD coverage %+v", c)
	}
	ten, err := s.Tenant(ctx, "ten_a")
	if err != nil {
		t.Fatal(err)
	}
	if want := (TenantCounts{Devices: 5, Coverage: 4, Active: 2, Expired: 1, None: 1, Unknown: 1}); ten.Counts != want {
		t.Errorf("counts %+v, want %+v", ten.Counts, want)
	}
	probs, err := s.Check(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range probs {
		if p.Check != "one-active-credential" { // the fixture has no credentials
			t.Errorf("problem after migration: %+v", p)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "rekey.db")); err != nil {
		t.Fatal(err)
	}
}

// fixedClock is a clock that stands still.
type fixedClock time.Time

func (c fixedClock) Now() time.Time { return time.Time(c) }

// TestCompactAttrsMigration opens a database at schema version 4 whose
// attributes were stored as received (spaced) and checks that
// 0005_compact_attrs leaves every one compact JSON with the same content.
func TestCompactAttrsMigration(t *testing.T) {
	dir := oldDatabase(t, 4,
		`INSERT INTO tenants (id, name, scope, created_at) VALUES ('ten_a', 'A', 'business.api', 1)`,
		`INSERT INTO devices (tenant_id, serial, coverage_state, updated_at, attrs) VALUES
			('ten_a', 'SPACED', 'active', 5, '{ "color" : "SILVER",  "imei": [ ], "note": "a  b" }'),
			('ten_a', 'COMPACT', 'active', 5, '{"a":1}'), ('ten_a', 'NONE', 'unknown', 5, NULL)`,
		`INSERT INTO coverage (tenant_id, serial, id, status, attrs, updated_at) VALUES
			('ten_a', 'SPACED', 'c1', 'ACTIVE', '{"status": "ACTIVE",
			 "isRenewable": true}', 5)`)
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	devs, _, err := s.Devices(context.Background(), "ten_a", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"COMPACT": `{"a":1}`, "NONE": ``, "SPACED": `{"color":"SILVER","imei":[],"note":"a  b"}`}
	for _, d := range devs {
		if string(d.Attrs) != want[d.Serial] {
			t.Errorf("%s: attrs %s, want %s", d.Serial, d.Attrs, want[d.Serial])
		}
		if d.Serial == "SPACED" && (len(d.Coverage) != 1 || string(d.Coverage[0].Attrs) != `{"status":"ACTIVE","isRenewable":true}`) {
			t.Errorf("SPACED coverage: %+v", d.Coverage)
		}
	}
	if len(devs) != 3 {
		t.Fatalf("%d devices, want 3", len(devs))
	}
}

// oldDatabase writes rekey.db in a new folder at schema version v (the
// first v migrations), runs qs on it and returns the folder.
func oldDatabase(t *testing.T, v int, qs ...string) string {
	t.Helper()
	dir := t.TempDir()
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", dsn(filepath.Join(dir, "rekey.db"), time.Second, false))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var all []string
	for _, m := range ms[:v] {
		all = append(all, m.sql)
	}
	for _, q := range append(append(all, fmt.Sprintf("PRAGMA user_version = %d", v)), qs...) {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%.60s: %v", q, err)
		}
	}
	return dir
}
