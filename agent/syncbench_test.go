package agent_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// BenchmarkAgentSync measures a full sync through the agent (agent.SyncTenant)
// from the local fake Apple over loopback HTTP into the real SQLite store:
// "first" fills an empty tenant, "resync" runs over a tenant that already
// holds every record (upserts). Records are devices plus coverage records.
func BenchmarkAgentSync(b *testing.B) {
	for _, n := range []int{1000, 10_000, 100_000} {
		for _, mode := range []string{"first", "resync"} {
			b.Run(fmt.Sprintf("devices=%d/%s", n, mode), func(b *testing.B) { benchSync(b, n, mode == "resync") })
		}
	}
}

func benchSync(b *testing.B, n int, resync bool) {
	h := newHarness(b)
	h.settings[payload.KeySyncInterval] = "0" // no background sync
	h.apple.SetDevices(n)
	h.push(h.entry("Acme", payload.IntentAdd, "", h.key(""), testPassphrase))
	h.waitImport("", store.ImportApplied)
	tenant := h.active("").TenantID
	ctx := context.Background()
	if resync {
		if err := h.agent.SyncTenant(ctx, tenant); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		if err := h.agent.SyncTenant(ctx, tenant); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	records := n + appletest.CoverageTotal(n)
	secs := b.Elapsed().Seconds()
	b.ReportMetric(float64(n*b.N)/secs, "devices/s")
	b.ReportMetric(float64(records*b.N)/secs, "records/s")
	wantRecords(b, h.agent.Store(), tenant, n)
	size := int64(0)
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(h.agent.Store().Path() + suffix); err == nil {
			size += fi.Size()
		}
	}
	b.ReportMetric(float64(size)/(1<<20), "db+wal-MiB")
}
