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

func TestSyncPagesEveryDeviceAndCoverage(t *testing.T) {
	const n = 2345
	f := newFixture(t, n)
	f.client.PageLimit = 1000
	sink := newSink()
	var seen []apple.Progress
	if err := f.client.Sync(t.Context(), f.cred, "", sink, func(p apple.Progress) { seen = append(seen, p) }); err != nil {
		t.Fatal(err)
	}
	sink.checkComplete(t, n)
	if got := f.srv.Stats().DeviceRequests; got != 3 {
		t.Errorf("device page requests = %d, want 3", got)
	}
	if len(seen) != 3 || !seen[2].Done || seen[2].Devices != n || seen[2].Coverage != appletest.CoverageTotal(n) || seen[2].Total != n {
		t.Errorf("progress = %+v", seen)
	}
	if seen[0].Done || seen[0].Cursor == "" {
		t.Errorf("first page progress %+v: want a cursor and not done", seen[0])
	}
	if got := f.srv.Stats().MaxInFlight; got > apple.DefaultConcurrency || got < 2 {
		t.Errorf("coverage requests in flight peaked at %d, want 2..%d", got, apple.DefaultConcurrency)
	}
}

func TestSyncMapsAppleFields(t *testing.T) {
	f := newFixture(t, 10)
	sink := newSink()
	if err := f.client.Sync(t.Context(), f.cred, "", sink, nil); err != nil {
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
	if m := sink.devices[appletest.DeviceID(9)].Model; m != "" {
		t.Errorf("device 9 has no deviceModel in the answer, got %q", m)
	}
	if c := sink.coverage[appletest.DeviceID(0)]; c.Records == nil || len(c.Records) != 0 {
		t.Errorf("device 0 coverage = %#v, want present with zero records", c.Records)
	}
	recs := sink.coverage[appletest.DeviceID(1)].Records
	if len(recs) != 2 {
		t.Fatalf("device 1 coverage = %+v", recs)
	}
	w, ac := recs[0], recs[1]
	if w.Description != "Limited Warranty" || w.Status != "ACTIVE" || w.PaymentType != "NONE" || w.AgreementNumber != "" || w.Renewable {
		t.Errorf("warranty = %+v", w)
	}
	if ac.Description != "AppleCare+" || ac.AgreementNumber != "AGR000000001" || !ac.Renewable || ac.Canceled || ac.PaymentType != "PAID_UP_FRONT" {
		t.Errorf("AppleCare+ = %+v", ac)
	}
	if ac.Start.IsZero() || !ac.End.After(ac.Start) || len(ac.Attributes) == 0 {
		t.Errorf("AppleCare+ dates %v..%v attrs %s", ac.Start, ac.End, ac.Attributes)
	}
}

func TestSyncResumesAfterInterruption(t *testing.T) {
	const n = 950
	tests := []struct {
		name      string
		interrupt func(*fixture, *memSink, context.CancelFunc) func(apple.Progress)
		is        error
		pageReads int // device page requests over both runs
	}{
		{name: "sink fails on the third page", is: errSinkFull, pageReads: 5,
			interrupt: func(_ *fixture, s *memSink, _ context.CancelFunc) func(apple.Progress) {
				s.failAfter = 2
				return nil
			}},
		{name: "context cancelled after the second page", is: context.Canceled, pageReads: 4,
			interrupt: func(_ *fixture, _ *memSink, cancel context.CancelFunc) func(apple.Progress) {
				return func(p apple.Progress) {
					if p.Pages == 2 {
						cancel()
					}
				}
			}},
		{name: "coverage fails for good mid-page", is: apple.ErrUnreachable, pageReads: 5,
			interrupt: func(f *fixture, _ *memSink, _ context.CancelFunc) func(apple.Progress) {
				f.srv.Fail(appletest.Fault{Endpoint: appletest.CoverageEndpoint, Mode: appletest.ServerError,
					DeviceID: appletest.DeviceID(650), Times: apple.DefaultMaxTries})
				return nil
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, n)
			f.client.PageLimit = 300
			sink := newSink()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			err := f.client.Sync(ctx, f.cred, "", sink, tt.interrupt(f, sink, cancel))
			if !errors.Is(err, tt.is) {
				t.Fatalf("interrupted Sync = %v, want %v", err, tt.is)
			}
			if sink.commits != 2 || len(sink.devices) != 600 || sink.cursor == "" {
				t.Fatalf("after interruption: %d commits, %d devices, cursor %q; want 2 pages kept",
					sink.commits, len(sink.devices), sink.cursor)
			}
			if err := f.client.Sync(t.Context(), f.cred, sink.cursor, sink, nil); err != nil {
				t.Fatalf("resumed Sync: %v", err)
			}
			sink.checkComplete(t, n)
			if got := f.srv.Stats().DeviceRequests; got != tt.pageReads {
				t.Errorf("device page requests = %d, want %d", got, tt.pageReads)
			}
		})
	}
}

func TestSyncRateLimitHonoursRetryAfter(t *testing.T) {
	tests := []struct {
		name       string
		retryAfter func(now time.Time) string
		jitter     bool
		want       []time.Duration // two 429s in a row
	}{
		{name: "seconds", retryAfter: func(time.Time) string { return "7" }, want: durations(7, 7)},
		// The injected sleep advances the clock, so the second wait for the
		// same date is zero.
		{name: "HTTP date", retryAfter: func(now time.Time) string {
			return now.Add(30 * time.Second).Format(http.TimeFormat)
		}, want: durations(30, 0)},
		{name: "capped at a minute", retryAfter: func(time.Time) string { return "3600" }, want: durations(60, 60)},
		{name: "jitter adds at most a tenth", retryAfter: func(time.Time) string { return "10" }, jitter: true, want: durations(11, 11)},
		{name: "date in the past retries now", retryAfter: func(now time.Time) string {
			return now.Add(-time.Hour).Format(http.TimeFormat)
		}, want: durations(0, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 5)
			if tt.jitter {
				f.client.Jitter = func(max time.Duration) time.Duration { return max }
			}
			f.srv.Fail(appletest.Fault{Endpoint: appletest.DevicesEndpoint, Mode: appletest.RateLimited,
				Times: 2, RetryAfter: tt.retryAfter(f.clock.Now())})
			sink := newSink()
			if err := f.client.Sync(t.Context(), f.cred, "", sink, nil); err != nil {
				t.Fatal(err)
			}
			if got := f.waits(); !slices.Equal(got, tt.want) {
				t.Errorf("waits = %v, want %v", got, tt.want)
			}
			sink.checkComplete(t, 5)
		})
	}
}

func TestSyncBacksOffOnServerErrors(t *testing.T) {
	f := newFixture(t, 4)
	f.client.Jitter = func(max time.Duration) time.Duration { return max }
	f.srv.Fail(appletest.Fault{Endpoint: appletest.CoverageEndpoint, Mode: appletest.ServerError,
		DeviceID: appletest.DeviceID(2), Times: 3})
	sink := newSink()
	if err := f.client.Sync(t.Context(), f.cred, "", sink, nil); err != nil {
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
	err := f.client.Sync(t.Context(), f.cred, "", sink, nil)
	var se *apple.StatusError
	if !errors.Is(err, apple.ErrUnreachable) || !errors.As(err, &se) || se.Status != http.StatusServiceUnavailable {
		t.Fatalf("Sync = %v, want unreachable after a 503", err)
	}
	if got := len(f.waits()); got != 2 {
		t.Errorf("waited %d times, want 2 (3 tries)", got)
	}
	if sink.commits != 0 {
		t.Errorf("sink got %d commits from a failed sync", sink.commits)
	}
}

func TestSyncRefreshesTokenOnceOn401(t *testing.T) {
	t.Run("one 401 then fine", func(t *testing.T) {
		f := newFixture(t, 3)
		f.srv.Fail(appletest.Fault{Endpoint: appletest.DevicesEndpoint, Mode: appletest.Unauthorized})
		sink := newSink()
		if err := f.client.Sync(t.Context(), f.cred, "", sink, nil); err != nil {
			t.Fatal(err)
		}
		if got := f.srv.Stats().TokensIssued; got != 2 {
			t.Errorf("tokens issued = %d, want 2", got)
		}
		sink.checkComplete(t, 3)
	})
	t.Run("revoked token mid-sync", func(t *testing.T) {
		f := newFixture(t, 30)
		f.client.PageLimit = 10
		sink := newSink()
		progress := func(p apple.Progress) {
			if p.Pages == 1 {
				f.srv.RevokeTokens()
			}
		}
		if err := f.client.Sync(t.Context(), f.cred, "", sink, progress); err != nil {
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
		err := f.client.Sync(t.Context(), f.cred, "", newSink(), nil)
		if !errors.Is(err, apple.ErrRejected) {
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
			err := f.client.Sync(t.Context(), f.cred, "", sink, nil)
			if !errors.Is(err, apple.ErrUnreachable) || !strings.Contains(fmtErr(err), "malformed") {
				t.Fatalf("Sync = %v, want a malformed-answer error", err)
			}
			if sink.commits != 0 || len(f.waits()) != 0 {
				t.Errorf("commits %d, waits %v: a malformed answer is neither stored nor retried", sink.commits, f.waits())
			}
		})
	}
}

func TestSyncEmptyCoverageDiffersFromFailedCoverage(t *testing.T) {
	f := newFixture(t, 8)
	gone := appletest.DeviceID(2)
	f.srv.Fail(appletest.Fault{Endpoint: appletest.CoverageEndpoint, Mode: appletest.NotFound, DeviceID: gone, Times: -1})
	sink := newSink()
	var last apple.Progress
	if err := f.client.Sync(t.Context(), f.cred, "", sink, func(p apple.Progress) { last = p }); err != nil {
		t.Fatal(err)
	}
	if _, ok := sink.devices[gone]; !ok {
		t.Error("device with unreadable coverage was dropped from the devices")
	}
	if c, ok := sink.coverage[gone]; ok {
		t.Errorf("device with unreadable coverage got a coverage answer %+v; want none (unknown)", c)
	}
	empty, ok := sink.coverage[appletest.DeviceID(4)]
	if !ok || len(empty.Records) != 0 {
		t.Errorf("device 4 (no coverage at Apple) = %+v, %v; want an answer with zero records", empty, ok)
	}
	if last.Skipped != 1 || !slices.Equal(last.SkippedIDs, []string{gone}) {
		t.Errorf("progress skipped = %d %v, want 1 [%s]", last.Skipped, last.SkippedIDs, gone)
	}
	if len(sink.coverage) != 7 {
		t.Errorf("coverage answers = %d, want 7", len(sink.coverage))
	}
}
