package store

import (
	"context"
	"slices"
	"strings"
	"testing"
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
