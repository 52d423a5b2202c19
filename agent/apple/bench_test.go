package apple_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/apple/appletest"
)

// countSink only counts, so the benchmark measures the client and the wire.
type countSink struct {
	listed           []apple.Device
	devices, records int
}

func (s *countSink) Page(_ context.Context, d []apple.Device, _ string) error {
	s.listed = append(s.listed, d...)
	return nil
}

func (s *countSink) Due(_ context.Context, n int) ([]apple.Device, error) {
	due := s.listed[:min(n, len(s.listed))]
	s.listed = s.listed[len(due):]
	return due, nil
}

func (s *countSink) Coverage(_ context.Context, c []apple.DeviceCoverage) error {
	for _, dc := range c {
		s.devices++
		s.records += len(dc.Records)
	}
	return nil
}

// BenchmarkSync syncs a whole organisation from the local fake over real
// HTTP on loopback: one orgDevices request per 1000 devices and one
// appleCareCoverage request per device, as many in flight as an
// unlimited budget allows (the most workers).
func BenchmarkSync(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			srv := newServer(b)
			srv.SetDevices(n)
			key, err := srv.NewCredential(apple.ScopeBusiness)
			if err != nil {
				b.Fatal(err)
			}
			cred := apple.Credential{ClientID: key.ClientID, KeyID: key.KeyID, Key: key.Private}
			client := &apple.Client{TokenURL: srv.TokenURL(), APIBaseURL: srv.APIBaseURL()}
			var total countSink
			start := time.Now()
			for b.Loop() {
				sink := &countSink{}
				if err := client.Sync(b.Context(), cred, apple.NewBudget(1e12), apple.SyncState{}, sink, nil); err != nil {
					b.Fatal(err)
				}
				if sink.devices != n || sink.records != appletest.CoverageTotal(n) {
					b.Fatalf("synced %d devices %d records, want %d %d", sink.devices, sink.records, n, appletest.CoverageTotal(n))
				}
				total.devices += sink.devices
				total.records += sink.records
			}
			secs := time.Since(start).Seconds()
			b.ReportMetric(float64(total.devices)/secs, "devices/s")
			b.ReportMetric(float64(total.devices+total.records)/secs, "records/s")
			b.ReportMetric(float64(srv.Stats().DeviceRequests+srv.Stats().CoverageRequests)/secs, "requests/s")
		})
	}
}
