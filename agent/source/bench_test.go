package source

import (
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkPushLatency measures the time from a change of the payload
// file to its Snapshot arriving, with the default timings: an atomic
// replace (temporary file + rename, as MDM agents write), read on the
// leading edge, and a write in place, read when the debounce window
// closes. Run it with -benchtime=300x to get percentiles over 300 pushes.
func BenchmarkPushLatency(b *testing.B) {
	for _, write := range []struct {
		name string
		do   func(testing.TB, string, []byte)
	}{{"rename", writeAtomic}, {"in-place", writeInPlace}} {
		b.Run(write.name, func(b *testing.B) {
			dir := b.TempDir()
			path := filepath.Join(dir, domain+".plist")
			h := start(b, Config{Dir: dir, Debounce: DefaultDebounce, Settle: DefaultSettle, Rescan: DefaultRescan, Valid: completePlist})
			h.expectAbsent(path)
			lat := make([]time.Duration, 0, b.N)
			for i := 0; b.Loop(); i++ {
				data := content(i)
				t0 := time.Now()
				write.do(b, path, data)
				h.expect(path, data)
				lat = append(lat, time.Since(t0))
			}
			slices.Sort(lat)
			ms := func(q int) float64 { return float64(lat[len(lat)*q/100]) / float64(time.Millisecond) }
			b.ReportMetric(ms(50), "p50-ms")
			b.ReportMetric(ms(95), "p95-ms")
			b.ReportMetric(float64(lat[len(lat)-1])/float64(time.Millisecond), "max-ms")
		})
	}
}
