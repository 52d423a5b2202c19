package agent_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/store"
)

// TestDevicePagesOverTheSocketMatchTheStore syncs 2,300 devices from the
// fake of Apple and walks them over the agent's socket in pages of 1,000
// (streamed, chunked answers) with and without a filter: every page holds
// what the store reads one device at a time, records included.
func TestDevicePagesOverTheSocketMatchTheStore(t *testing.T) {
	h := newHarness(t)
	tenant := addTenant(t, h, 2300)
	ctx := context.Background()
	if err := h.agent.SyncTenant(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	c := api.NewClient(h.socket)
	defer c.Close()
	for _, filter := range []store.DeviceQuery{{}, {Coverage: store.CoverageActive}, {Coverage: store.CoverageExpired, Released: store.ReleasedExclude}} {
		var want []store.Device
		for q := filter; ; {
			q.Limit = 1
			page, next, err := h.agent.Store().ListDevices(ctx, tenant, q)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, page...)
			if q.After = next; next == "" {
				break
			}
		}
		var got []store.Device
		pages := 0
		for q := filter; ; pages++ {
			q.Limit = 1000
			page, err := c.Devices(ctx, tenant, q)
			if err != nil {
				t.Fatalf("page %d of %+v: %v", pages, filter, err)
			}
			got = append(got, page.Devices...)
			if q.After = page.Next; page.Next == "" {
				break
			}
		}
		if len(want) == 0 || !reflect.DeepEqual(got, want) {
			t.Fatalf("%+v: %d devices over the socket in %d pages, the store has %d", filter, len(got), pages+1, len(want))
		}
	}
}
