package agent_test

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/store"
)

// Apple's pace as measured against live tenants (docs/apple.md): about 20
// GET requests a minute. The fake enforces it with bursts of paceBurst; the
// fake, the agent's store and its Apple client share a clock that runs
// paceScale times faster than real time, so a sync of hours takes seconds.
const (
	paceRate  = 20.0
	paceBurst = 5
	paceScale = 1500.0
)

// BenchmarkSyncAtApplesPace syncs through the agent into the store against
// the fake's rate limit with the adaptive budget, and reports against the
// least a sync can do: requests per minimal request (device list pages + one
// coverage request per device + one token), the share of 429 answers, and
// the (scaled) wall time per requests ÷ rate. "killed" is a first sync
// whose process is SIGKILLed once half the coverage is stored, then resumed
// by a new agent; its figures cover both runs.
func BenchmarkSyncAtApplesPace(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		for _, mode := range []string{"first", "resync", "killed"} {
			b.Run(fmt.Sprintf("devices=%d/%s", n, mode), func(b *testing.B) { benchPace(b, n, mode) })
		}
	}
}

func benchPace(b *testing.B, n int, mode string) {
	for range b.N {
		start := time.Now().UTC()
		clk := appletest.NewScaledClock(start, paceScale)
		h := newHarness(b, appleLike(nil, nil), func(c *agent.Config) { c.Clock, c.AppleSleep = clk, clk.Sleep })
		h.apple.SetClock(clk)
		h.apple.SetRateLimit(paceRate, paceBurst)
		tenant := addTenant(b, h, n)
		ctx := context.Background()
		if mode == "resync" {
			if err := h.agent.SyncTenant(ctx, tenant); err != nil {
				b.Fatal(err)
			}
		}
		base, t0 := h.apple.Stats(), clk.Now()
		b.ResetTimer()
		if mode == "killed" {
			h.stop()
			h.killSyncAt(tenant, n/2, envScale+"="+strconv.FormatFloat(paceScale, 'f', -1, 64),
				envScaleStart+"="+strconv.FormatInt(start.UnixNano(), 10), envScaleReal0+"="+strconv.FormatInt(clk.Real0().UnixNano(), 10))
			h.start(appleLike(nil, nil), func(c *agent.Config) { c.Clock, c.AppleSleep = clk, clk.Sleep })
			h.waitFor("payload read", isKind(store.EvSourceRead))
		}
		if err := h.agent.SyncTenant(ctx, tenant); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		wall := clk.Now().Sub(t0)
		now := h.apple.Stats()
		requests := (now.TokenRequests - base.TokenRequests) + (now.APIRequests - base.APIRequests)
		throttled := now.Throttled - base.Throttled
		minimal := (n+999)/1000 + n + 1
		ideal := time.Duration(float64(requests) / paceRate * float64(time.Minute))
		b.ReportMetric(float64(requests)/float64(minimal), "req/minimal")
		b.ReportMetric(100*float64(throttled)/float64(requests), "429-%")
		b.ReportMetric(wall.Seconds()/ideal.Seconds(), "wall/ideal")
		b.ReportMetric(math.Round(wall.Hours()*10)/10, "scaled-hours")
		wantRecords(b, h.agent.Store(), tenant, n)
		h.stop()
	}
}
