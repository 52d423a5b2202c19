package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/rekeyd/rekey/store"
)

// TestCoverageFreshnessFollowsWritesAndCutoff checks that the agent's store,
// which keeps freshness between device writes, answers at every step what
// a read-only store of the same file (which always reads) answers: after
// new devices, coverage reads, a release, and as the cut-off moves past
// last reads.
func TestCoverageFreshnessFollowsWritesAndCutoff(t *testing.T) {
	s, dir, clk := openStore(t)
	ctx := context.Background()
	ten, _ := addTenant(t, s, "A")
	ro, err := store.OpenReadOnly(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	step := 0
	same := func(what string, cutoff time.Time) store.Freshness {
		t.Helper()
		step++
		got, err := s.CoverageFreshness(ctx, ten.ID, cutoff)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ro.CoverageFreshness(ctx, ten.ID, cutoff)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("step %d (%s): freshness %+v, read afresh %+v", step, what, got, want)
		}
		return got
	}
	start := clk.Now()
	same("no devices", start)
	if err := s.UpsertDevices(ctx, ten.ID, []store.Device{{Serial: "A"}, {Serial: "B"}, {Serial: "C"}}); err != nil {
		t.Fatal(err)
	}
	if f := same("new devices", start); f.Never != 3 || f.Stale != 3 {
		t.Fatalf("three new devices: %+v", f)
	}
	read := func(serial string) time.Time {
		t.Helper()
		clk.Advance(time.Hour)
		at := clk.Now()
		if err := s.UpsertCoverage(ctx, ten.ID, []store.DeviceCoverage{{Serial: serial, Records: []store.Coverage{}}}); err != nil {
			t.Fatal(err)
		}
		return at
	}
	a := read("A")
	b := read("B")
	same("two read", start)
	// The cut-off moves past A's read, then past B's: A, then B, turn stale.
	if f := same("cut-off before A", a.Add(-time.Minute)); f.Stale != 1 {
		t.Fatalf("before A's read: %+v", f)
	}
	if f := same("cut-off past A", a.Add(time.Minute)); f.Stale != 2 {
		t.Fatalf("past A's read: %+v", f)
	}
	same("cut-off a bit later", a.Add(2*time.Minute))
	if f := same("cut-off past B", b.Add(time.Minute)); f.Stale != 3 {
		t.Fatalf("past B's read: %+v", f)
	}
	same("cut-off back before A", start)
	// A pass that no longer lists C releases it.
	if _, err := s.BeginPass(ctx, ten.ID); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	if _, err := s.SyncPage(ctx, ten.ID, []store.Device{{Serial: "A"}, {Serial: "B"}}, ""); err != nil {
		t.Fatal(err)
	}
	if f := same("C released", b.Add(time.Minute)); f.Never != 0 || f.Stale != 2 {
		t.Fatalf("after C's release: %+v", f)
	}
	read("A")
	same("A read again", b.Add(time.Minute))
}
