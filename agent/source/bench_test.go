package source

import (
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkPushLatency measures the time from an atomic replace of the
// payload file (temporary file + rename, as MDM agents write) to its
// Snapshot arriving, with the default Settle and Rescan. Run it with
// -benchtime=300x to get percentiles over 300 pushes.
func BenchmarkPushLatency(b *testing.B) {
	for _, debounce := range []time.Duration{DefaultDebounce, 10 * time.Millisecond} {
		b.Run("debounce="+debounce.String(), func(b *testing.B) {
			dir := b.TempDir()
			path := filepath.Join(dir, domain+".plist")
			h := start(b, Config{Dir: dir, Debounce: debounce, Settle: DefaultSettle, Rescan: DefaultRescan})
			h.expectAbsent(path)
			lat := make([]time.Duration, 0, b.N)
			for i := 0; b.Loop(); i++ {
				data := content(i)
				t0 := time.Now()
				writeAtomic(b, path, data)
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
