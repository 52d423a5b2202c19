package apple_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/apple/appletest"
)

func TestSyncAsksForPagesOf1000AndReadsEveryDeviceOnce(t *testing.T) {
	const n = 2345
	f := newFixture(t, n)
	sink := newSink()
	var last apple.Progress
	if err := f.sync(t.Context(), sink, func(p apple.Progress) { last = p }); err != nil {
		t.Fatal(err)
	}
	sink.checkComplete(t, n)
	st := f.srv.Stats()
	// links.next carries only the cursor: followed as given it would drop
	// to Apple's default page of 100 (24 requests).
	if st.DeviceRequests != 3 || st.CoverageRequests != n || st.TokensIssued != 1 {
		t.Errorf("requests: %d pages, %d coverage, %d tokens; want 3, %d, 1", st.DeviceRequests, st.CoverageRequests, st.TokensIssued, n)
	}
	if last.Pages != 3 || last.Devices != n || last.Checked != n || last.Coverage != appletest.CoverageTotal(n) || !last.Listed || last.Total != n {
		t.Errorf("last progress %+v", last)
	}
	if sink.batches < n/apple.DefaultBatchSize {
		t.Errorf("%d coverage batches for %d devices, want batches of at most %d", sink.batches, n, apple.DefaultBatchSize)
	}
}

func TestSyncMapsAppleFields(t *testing.T) {
	f := newFixture(t, 10)
	sink := newSink()
	if err := f.sync(t.Context(), sink, nil); err != nil {
		t.Fatal(err)
	}
	d := sink.devices[appletest.DeviceID(1)]
	if d.Serial != d.ID || d.Model == "" || d.ProductFamily != "iPhone" || d.Status != "UNASSIGNED" {
		t.Errorf("device 1 = %+v", d)
	}
	var attrs map[string]any
	if err := json.Unmarshal(d.Attributes, &attrs); err != nil || attrs["orderNumber"] != "1000001" {
		t.Errorf("raw attributes %s (%v): want every attribute kept", d.Attributes, err)
	}
	if c := sink.coverage[appletest.DeviceID(0)]; c.Records == nil || len(c.Records) != 0 || c.Failed {
		t.Errorf("device 0 coverage = %#v, want present with zero records", c)
	}
	recs := sink.coverage[appletest.DeviceID(1)].Records
	if len(recs) != 2 {
		t.Fatalf("device 1 coverage = %+v", recs)
	}
	w, ac := recs[0], recs[1]
	if w.Description != "Limited Warranty" || w.Status != "INACTIVE" || w.PaymentType != "NONE" || w.AgreementNumber != "" || w.Renewable {
		t.Errorf("warranty = %+v", w)
	}
	if ac.ID != "AGR000000000" || ac.AgreementNumber != ac.ID || !ac.Renewable || ac.Canceled || ac.PaymentType != "PAID_UP_FRONT" {
		t.Errorf("AppleCare+ = %+v", ac)
	}
	if ac.Start.IsZero() || !ac.End.After(ac.Start) || len(ac.Attributes) == 0 {
		t.Errorf("AppleCare+ dates %v..%v attrs %s", ac.Start, ac.End, ac.Attributes)
	}
	if sub := sink.coverage[appletest.DeviceID(3)].Records[0]; sub.PaymentType != "ABE_SUBSCRIPTION" || !sub.End.IsZero() || sub.Status != "ACTIVE" {
		t.Errorf("subscription = %+v, want no end", sub)
	}
	if a, b := sink.coverage[appletest.DeviceID(1)].Records[1], sink.coverage[appletest.DeviceID(5)].Records[1]; a.ID != b.ID {
		t.Errorf("devices 1 and 5 share an agreement: ids %q and %q", a.ID, b.ID)
	}
}

func TestSyncResumesWithoutReadingAgainWhatWasStored(t *testing.T) {
	const n = 1300
	tests := []struct {
		name      string
		interrupt func(*fixture, *memSink, context.CancelFunc) func(apple.Progress)
		is        error
	}{
		{name: "sink fails on the fifth coverage batch", is: errSinkFull,
			interrupt: func(_ *fixture, s *memSink, _ context.CancelFunc) func(apple.Progress) {
				s.failAfter = 4
				return nil
			}},
		{name: "cancelled after the first page", is: context.Canceled,
			interrupt: func(_ *fixture, _ *memSink, cancel context.CancelFunc) func(apple.Progress) {
				return func(p apple.Progress) {
					if p.Pages == 1 {
						cancel()
					}
				}
			}},
		{name: "cancelled mid-coverage", is: context.Canceled,
			interrupt: func(_ *fixture, _ *memSink, cancel context.CancelFunc) func(apple.Progress) {
				return func(p apple.Progress) {
					if p.Checked >= 300 {
						cancel()
					}
				}
			}},
		{name: "coverage fails for good", is: apple.ErrUnreachable,
			interrupt: func(f *fixture, _ *memSink, _ context.CancelFunc) func(apple.Progress) {
				f.srv.Fail(appletest.Fault{Endpoint: appletest.CoverageEndpoint, Mode: appletest.ServerError,
					DeviceID: appletest.DeviceID(650), Times: apple.DefaultMaxTries})
				return nil
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, n)
			sink := newSink()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if err := f.sync(ctx, sink, tt.interrupt(f, sink, cancel)); !errors.Is(err, tt.is) {
				t.Fatalf("interrupted Sync = %v, want %v", err, tt.is)
			}
			stored := len(sink.coverage)
			if err := f.sync(t.Context(), sink, nil); err != nil {
				t.Fatalf("resumed Sync: %v", err)
			}
			sink.checkComplete(t, n)
			st := f.srv.Stats()
			// Every device read once, plus at most what was in flight or in
			// the failed batch when the first run stopped.
			if extra := st.CoverageRequests - n; extra < 0 || extra > apple.DefaultBatchSize+16+apple.DefaultMaxTries {
				t.Errorf("%d coverage requests for %d devices (%d stored before the resume)", st.CoverageRequests, n, stored)
			}
			if st.DeviceRequests > 3 {
				t.Errorf("%d device list requests, want at most 3", st.DeviceRequests)
			}
		})
	}
}

func TestSyncWaitsTheFullRetryAfterAndSlowsDown(t *testing.T) {
	for _, ra := range []string{"7", "300", "3600"} {
		t.Run(ra, func(t *testing.T) {
			f := newFixture(t, 5)
			f.budget = apple.NewBudget(0)
			f.srv.Fail(appletest.Fault{Endpoint: appletest.DevicesEndpoint, Mode: appletest.RateLimited, Times: 1, RetryAfter: ra})
			before := f.budget.Rate()
			sink := newSink()
			if err := f.sync(t.Context(), sink, nil); err != nil {
				t.Fatal(err)
			}
			sink.checkComplete(t, 5)
			want, _ := time.ParseDuration(ra + "s")
			if !slices.Contains(f.waits(), want) {
				t.Errorf("waits %v, want one of %v", f.waits(), want)
			}
			if after := f.budget.Rate(); after >= before {
				t.Errorf("rate %v after a 429, want below %v", after, before)
			}
		})
	}
}

func TestSyncPausesWhenAppleAsksForMoreThanAnHour(t *testing.T) {
	f := newFixture(t, 5)
	f.srv.Fail(appletest.Fault{Endpoint: appletest.CoverageEndpoint, Mode: appletest.RateLimited, Times: 1, RetryAfter: "7200"})
	sink := newSink()
	err := f.sync(t.Context(), sink, nil)
	var pe *apple.PausedError
	if !errors.Is(err, apple.ErrPaused) || !errors.As(err, &pe) || pe.Until.Sub(f.clock.Now()) < 119*time.Minute {
		t.Fatalf("Sync = %v, want a pause of two hours", err)
	}
	if !sink.state.Listed || len(sink.devices) != 5 {
		t.Fatalf("the pause lost progress: %+v, %d devices", sink.state, len(sink.devices))
	}
	// The budget stays paused: a sync before the time pauses again at once.
	was := f.srv.Stats().APIRequests
	if err := f.sync(t.Context(), sink, nil); !errors.Is(err, apple.ErrPaused) || f.srv.Stats().APIRequests != was {
		t.Fatalf("sync during the pause: %v, %d requests", err, f.srv.Stats().APIRequests-was)
	}
	f.clock.Add(2*time.Hour + time.Minute)
	if err := f.sync(t.Context(), sink, nil); err != nil {
		t.Fatal(err)
	}
	sink.checkComplete(t, 5)
}

func TestSyncAgainstAppleLikeRateLimit(t *testing.T) {
	const n = 120
	f := newFixture(t, n)
	f.budget = apple.NewBudget(0)
	f.srv.SetRateLimit(20, 5) // Apple as measured: about 20 a minute
	sink := newSink()
	if err := f.sync(t.Context(), sink, nil); err != nil {
		t.Fatal(err)
	}
	sink.checkComplete(t, n)
	st := f.srv.Stats()
	if st.APIRequests-st.Throttled != n+1 {
		t.Errorf("%d answered API requests, want %d", st.APIRequests-st.Throttled, n+1)
	}
	if st.Throttled > st.APIRequests/10 {
		t.Errorf("%d of %d requests throttled", st.Throttled, st.APIRequests)
	}
}

func TestSyncRefusedCursor(t *testing.T) {
	f := newFixture(t, 1500)
	sink := newSink()
	ctx, cancel := context.WithCancel(t.Context())
	_ = f.sync(ctx, sink, func(p apple.Progress) {
		if p.Pages == 1 {
			cancel()
		}
	})
	cancel()
	if sink.state.Cursor == "" {
		t.Fatal("no cursor stored after the first page")
	}
	f.srv.ExpireCursors()
	err := f.sync(t.Context(), sink, nil)
	var se *apple.StatusError
	if !errors.Is(err, apple.ErrCursorRefused) || !errors.As(err, &se) || se.ID == "" || !strings.Contains(err.Error(), se.ID) {
		t.Fatalf("Sync with an expired cursor = %v, want ErrCursorRefused with Apple's error id", err)
	}
	sink.state = apple.SyncState{}
	if err := f.sync(t.Context(), sink, nil); err != nil {
		t.Fatal(err)
	}
	sink.dupes = nil // the list was read again from the start
	sink.checkComplete(t, 1500)
}

func TestSyncBacksOffOnServerErrors(t *testing.T) {
	f := newFixture(t, 4)
	f.client.Jitter = func(max time.Duration) time.Duration { return max }
	f.srv.Fail(appletest.Fault{Endpoint: appletest.CoverageEndpoint, Mode: appletest.ServerError,
		DeviceID: appletest.DeviceID(2), Times: 3})
	sink := newSink()
	if err := f.sync(t.Context(), sink, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := f.waits(), durations(1, 2, 4); !slices.Equal(got, want) {
		t.Errorf("waits = %v, want %v", got, want)
	}
	sink.checkComplete(t, 4)
}

func TestSyncGivesUpAfterMaxTries(t *testing.T) {
	f := newFixture(t, 4)
	f.client.MaxTries = 3
	f.client.BackoffMax = 90 * time.Second
	f.srv.Fail(appletest.Fault{Endpoint: appletest.DevicesEndpoint, Mode: appletest.ServerError, Times: -1})
	sink := newSink()
	err := f.sync(t.Context(), sink, nil)
	var se *apple.StatusError
	if !errors.Is(err, apple.ErrUnreachable) || !errors.As(err, &se) || se.Status != http.StatusServiceUnavailable || se.ID == "" {
		t.Fatalf("Sync = %v, want unreachable after a 503 with Apple's error id", err)
	}
	if apple.ErrorID(err) != se.ID {
		t.Errorf("ErrorID = %q, want %q", apple.ErrorID(err), se.ID)
	}
	if got := len(f.waits()); got != 2 {
		t.Errorf("waited %d times, want 2 (3 tries)", got)
	}
	if sink.pages != 0 {
		t.Errorf("sink got %d pages from a failed sync", sink.pages)
	}
}

func TestSyncRefreshesTokenOnceOn401(t *testing.T) {
	t.Run("one 401 then fine", func(t *testing.T) {
		f := newFixture(t, 3)
		f.srv.Fail(appletest.Fault{Endpoint: appletest.DevicesEndpoint, Mode: appletest.Unauthorized})
		sink := newSink()
		if err := f.sync(t.Context(), sink, nil); err != nil {
			t.Fatal(err)
		}
		if got := f.srv.Stats().TokensIssued; got != 2 {
			t.Errorf("tokens issued = %d, want 2", got)
		}
		sink.checkComplete(t, 3)
	})
	t.Run("revoked token mid-sync", func(t *testing.T) {
		f := newFixture(t, 30)
		sink := newSink()
		progress := func(p apple.Progress) {
			if p.Pages == 1 {
				f.srv.RevokeTokens()
			}
		}
		if err := f.sync(t.Context(), sink, progress); err != nil {
			t.Fatal(err)
		}
		sink.checkComplete(t, 30)
		if got := f.srv.Stats().TokensIssued; got != 2 {
			t.Errorf("tokens issued = %d, want 2 (one refresh shared by all workers)", got)
		}
	})
	t.Run("401 twice fails as rejected", func(t *testing.T) {
		f := newFixture(t, 3)
		f.srv.Fail(appletest.Fault{Endpoint: appletest.DevicesEndpoint, Mode: appletest.Unauthorized, Times: 2})
		if err := f.sync(t.Context(), newSink(), nil); !errors.Is(err, apple.ErrRejected) {
			t.Fatalf("Sync = %v, want ErrRejected", err)
		}
		if got := f.srv.Stats().TokensIssued; got != 2 {
			t.Errorf("tokens issued = %d, want 2 (one refresh only)", got)
		}
	})
}

func TestSyncMalformedAnswer(t *testing.T) {
	for _, e := range []appletest.Endpoint{appletest.DevicesEndpoint, appletest.CoverageEndpoint} {
		t.Run(string(e), func(t *testing.T) {
			f := newFixture(t, 3)
			f.srv.Fail(appletest.Fault{Endpoint: e, Mode: appletest.Malformed})
			sink := newSink()
			err := f.sync(t.Context(), sink, nil)
			if !errors.Is(err, apple.ErrUnreachable) || !strings.Contains(fmtErr(err), "malformed") {
				t.Fatalf("Sync = %v, want a malformed-answer error", err)
			}
			if len(sink.coverage) > 2 || len(f.waits()) != 0 {
				t.Errorf("coverage %d, waits %v: a malformed answer is neither stored nor retried", len(sink.coverage), f.waits())
			}
		})
	}
}

func TestSyncFailedCoverageReadIsStoredAsFailed(t *testing.T) {
	f := newFixture(t, 8)
	gone := appletest.DeviceID(2)
	f.srv.Fail(appletest.Fault{Endpoint: appletest.CoverageEndpoint, Mode: appletest.NotFound, DeviceID: gone, Times: -1})
	sink := newSink()
	var last apple.Progress
	if err := f.sync(t.Context(), sink, func(p apple.Progress) { last = p }); err != nil {
		t.Fatal(err)
	}
	if c := sink.coverage[gone]; !c.Failed || len(c.Records) != 0 || !strings.Contains(c.Reason, "404") {
		t.Errorf("device with unreadable coverage: %+v; want a failed read", c)
	}
	empty := sink.coverage[appletest.DeviceID(4)]
	if empty.Failed || empty.Records == nil || len(empty.Records) != 0 {
		t.Errorf("device 4 (no coverage at Apple) = %+v; want an answer with zero records", empty)
	}
	if last.Failed != 1 || last.Checked != 8 {
		t.Errorf("progress %+v, want 8 checked, 1 failed", last)
	}
}
