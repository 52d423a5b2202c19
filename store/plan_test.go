package store

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestClearCoverageSeeksByDevice guards against a per-device scan of
// the tenant's coverage in every sync page.
func TestClearCoverageSeeksByDevice(t *testing.T) {
	plan := queryPlan(t, clearCoverageSQL, "ten_x", "SN1")
	if len(plan) != 1 || !strings.Contains(plan[0], "PRIMARY KEY (tenant_id=? AND serial=?)") {
		t.Fatalf("plan of %q: %q", clearCoverageSQL, plan)
	}
}

// TestFreshnessReadsOnlyTheCheckIndex guards status against a scan of every
// device of the tenant.
func TestFreshnessReadsOnlyTheCheckIndex(t *testing.T) {
	plan := slices.DeleteFunc(queryPlan(t, freshnessSQL, "ten_x", 1), func(p string) bool { return !strings.Contains(p, "devices") })
	if len(plan) != 4 {
		t.Fatalf("plan %q", plan)
	}
	for _, p := range plan {
		if !strings.Contains(p, "COVERING INDEX devices_by_check (tenant_id=? AND coverage_checked_at") {
			t.Errorf("freshness reads more than the index: %q", p)
		}
	}
}

// TestFilteredPageReadsCoverageInOneRange guards a filtered device page
// against a seek per device and against a sort.
func TestFilteredPageReadsCoverageInOneRange(t *testing.T) {
	plan := queryPlan(t, coverageListSQL, "ten_x", "A", "B", `["A","B"]`)
	sorted := slices.ContainsFunc(plan, func(p string) bool { return strings.Contains(p, "TEMP B-TREE") })
	if len(plan) == 0 || plan[0] != "SEARCH coverage USING PRIMARY KEY (tenant_id=? AND serial>? AND serial<?)" || sorted {
		t.Fatalf("plan of the filtered page's coverage: %q", plan)
	}
}

// TestDevicePageWalksThePrimaryKey guards a device page, with each
// filter, against another index and against a sort.
func TestDevicePageWalksThePrimaryKey(t *testing.T) {
	for _, q := range []DeviceQuery{{}, {Coverage: CoverageUnknown, Released: ReleasedExclude},
		{EndBefore: time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)}, {SerialPrefix: "C02"}} {
		where, args, err := q.where("ten_x")
		if err != nil {
			t.Fatal(err)
		}
		plan := queryPlan(t, `SELECT `+deviceCols+` FROM devices d WHERE `+where+` ORDER BY d.serial LIMIT 250`, args...)
		if len(plan) != 1 || !strings.HasPrefix(plan[0], "SEARCH d USING PRIMARY KEY (tenant_id=? AND serial>?") {
			t.Errorf("plan of a page with %+v: %q", q, plan)
		}
	}
}

// TestCredentialInStateSeeksItsPartialIndex: credIn writes the state into
// its text so that the state's partial unique index serves it.
func TestCredentialInStateSeeksItsPartialIndex(t *testing.T) {
	for _, st := range []CredState{CredActive, CredPrevious, CredPending} {
		plan := queryPlan(t, `SELECT `+credCols+` FROM credentials WHERE tenant_id = ? AND state = '`+string(st)+`'`, "ten_x")
		if len(plan) != 1 || !strings.Contains(plan[0], "INDEX credentials_one_"+string(st)+" (tenant_id=?)") {
			t.Errorf("plan of the %s credential: %q", st, plan)
		}
	}
}

// queryPlan returns the detail column of EXPLAIN QUERY PLAN for query with
// args, on a new empty store.
func queryPlan(t *testing.T, query string, args ...any) []string {
	t.Helper()
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows, err := s.r.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}

// TestPerChangeReadsSeekAnIndex guards the reads made after every change
// (the status snapshot, a rotation's bookkeeping) against reading every
// credential, import and rotation ever recorded: each reads through the
// index migration 0006 made for it.
func TestPerChangeReadsSeekAnIndex(t *testing.T) {
	for _, c := range []struct {
		name, query, table, index string
		args                      []any
	}{
		{"credentials in use", inUseSQL, "credentials", "credentials_in_use", nil},
		{"waiting imports", waitingSQL, "imports", "imports_waiting", nil},
		{"last rotation", lastRotationSQL, "rotations", "rotations_by_start", nil},
		{"imports of tenant", importsOfSQL + "(?, ?, ?) ORDER BY created_at, id", "imports", "imports_by_tenant",
			[]any{"ten_x", "failed", "needs-target", "pending-unlock"}},
		{"newer applied import", newerAppliedSQL, "imports", "imports_by_tenant", []any{"ten_x", 1, "imp"}},
		{"cut-over rotation", cutoverRotationSQL, "rotations", "rotations_by_target", []any{"ten_x", "cred_a", "cred_b"}},
	} {
		plan := queryPlan(t, c.query, c.args...)
		found := false
		for _, p := range plan {
			if !strings.Contains(p, " "+c.table) {
				continue
			}
			found = true
			if !strings.Contains(p, "INDEX "+c.index) {
				t.Errorf("%s reads %s without %s: %q", c.name, c.table, c.index, plan)
			}
		}
		if !found {
			t.Errorf("%s: plan %q does not read %s", c.name, plan, c.table)
		}
	}
}
