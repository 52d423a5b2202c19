package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/rekeyd/rekey/store"
)

// fixtures are state folders with a tenant of n devices (one coverage record
// each), built once per process and shared by every b.N round.
var fixtures = struct {
	sync.Mutex
	root string
	dirs map[int]string
}{dirs: map[int]string{}}

func fixture(b *testing.B, devices int) (dir, tenantID string) {
	b.Helper()
	fixtures.Lock()
	defer fixtures.Unlock()
	if fixtures.root == "" {
		root, err := os.MkdirTemp("", "rekey-store-bench-")
		if err != nil {
			b.Fatal(err)
		}
		fixtures.root = root
	}
	dir = filepath.Join(fixtures.root, fmt.Sprint(devices))
	if _, ok := fixtures.dirs[devices]; !ok {
		s, err := store.Open(dir, store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		ten, _ := addTenant(b, s, "bench")
		if devices > 0 {
			if err := s.BulkDevices(context.Background(), ten.ID, "SN", devices); err != nil {
				b.Fatal(err)
			}
		}
		s.Close()
		fixtures.dirs[devices] = ten.ID
	}
	return dir, fixtures.dirs[devices]
}

// removeFixtures is called by TestMain after the run.
func removeFixtures() {
	if fixtures.root != "" {
		os.RemoveAll(fixtures.root)
	}
}

// BenchmarkCutover times Cutover alone (stage, validate and confirm run with
// the timer stopped) for tenants of 0, 100k and 1M devices: the cost must not
// depend on the tenant's data.
func BenchmarkCutover(b *testing.B) {
	for _, n := range []int{0, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			dir, tenantID := fixture(b, n)
			s, err := store.Open(dir, store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				rot, _ := stageValidated(b, s, tenantID, "next")
				b.StartTimer()
				if _, err := s.Cutover(ctx, rot.ID); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if _, err := s.Confirm(ctx, tenantID, rot.ToCredentialID); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.StopTimer()
			if devs, _, err := s.Counts(ctx, tenantID); err != nil || devs != n {
				b.Fatalf("fixture has %d devices (%v), want %d", devs, err, n)
			}
		})
	}
}

// BenchmarkUpsertDevices inserts new devices in batches of 1000, one
// transaction per batch, as a sync does.
func BenchmarkUpsertDevices(b *testing.B) {
	s, _, _ := openStore(b)
	ten, _ := addTenant(b, s, "bench")
	ctx := context.Background()
	const batch = 1000
	devs := make([]store.Device, batch)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		for j := range devs {
			devs[j] = store.Device{Serial: fmt.Sprintf("SN%07d-%04d", i, j), AppleID: "APPLEID", Model: "Mac14,2",
				ProductFamily: "Mac", Status: "ASSIGNED", Attrs: []byte(`{"color":"silver","capacity":"512GB"}`)}
		}
		b.StartTimer()
		if err := s.UpsertDevices(ctx, ten.ID, devs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "records/s")
}
