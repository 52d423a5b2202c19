package agent_test

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/agent/source"
	"github.com/rekeyd/rekey/store"
)

// minPushes is the least number of pushes the latency percentiles are taken over.
const minPushes = 200

// BenchmarkPushToCutover measures the time from an atomic replace of the
// payload plist to the committed cut-over of the update it carries: watch,
// debounce, read, parse, decrypt at work factor 10, decide, stage, auth
// check against the local fake Apple, validate, cut over. It makes at least
// minPushes pushes whatever b.N is and reports p50 and p95; ns/op is the mean.
func BenchmarkPushToCutover(b *testing.B) {
	for _, bc := range []struct {
		name     string
		debounce time.Duration
	}{
		{"debounce=100ms(default)", source.DefaultDebounce},
		{"debounce=10ms", 10 * time.Millisecond},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := newHarness(b, func(c *agent.Config) { c.Debounce, c.Settle = bc.debounce, source.DefaultSettle }).noSync()
			first := h.key("")
			h.push(withID("bench-0", h.entry("Bench", payload.IntentAdd, "", first, testPassphrase)))
			h.untilImport("bench-0", store.ImportApplied)

			pushes := max(b.N, minPushes)
			lat := make([]time.Duration, 0, pushes)
			writes := make([]time.Duration, 0, pushes) // write, fsync, rename, fsync of the folder
			b.ResetTimer()
			for i := 1; i <= pushes; i++ {
				b.StopTimer()
				id := "bench-" + strconv.Itoa(i)
				e := withID(id, h.entry("Bench", payload.IntentUpdate, "bench", h.key(first.ClientID), testPassphrase))
				b.StartTimer()
				start := time.Now()
				h.push(e)
				writes = append(writes, time.Since(start))
				h.waitFor("cut-over of "+id, func(ev store.Event) bool {
					return ev.Kind == store.EvRotationCutover && ev.ImportID == id
				})
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			slices.Sort(writes)
			var sum time.Duration
			for _, d := range lat {
				sum += d
			}
			b.ReportMetric(float64(sum.Nanoseconds())/float64(len(lat)), "ns/op")
			b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
			b.ReportMetric(ms(lat[len(lat)*95/100]), "p95-ms")
			b.ReportMetric(ms(writes[len(writes)/2]), "write-p50-ms")
			b.ReportMetric(float64(len(lat)), "pushes")
			h.healthy()
		})
	}
}

// BenchmarkIdle measures what an idle agent with one tenant costs: CPU time
// and wake-ups (context switches summed over the threads, from /proc; Linux
// only) over REKEY_IDLE_DURATION (default 60 s; the whole test process,
// which also holds the fake Apple server, idle too), resident memory and
// live heap. It runs once whatever b.N is.
func BenchmarkIdle(b *testing.B) {
	idle := 60 * time.Second
	if v := os.Getenv("REKEY_IDLE_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("REKEY_IDLE_DURATION=%q: %v; use a Go duration such as 60s", v, err)
		}
		idle = d
	}
	h := newHarness(b).noSync()
	h.push(withID("idle", h.entry("Idle", payload.IntentAdd, "", h.key(""), testPassphrase)))
	h.untilImport("idle", store.ImportApplied)
	runtime.GC()

	before, switchesBefore := cpuTime(b), ctxSwitches()
	start := time.Now()
	time.Sleep(idle) // the measurement: the agent has nothing to do
	cpu, switches := cpuTime(b)-before, ctxSwitches()-switchesBefore
	wall := time.Since(start)

	b.ReportMetric(ms(cpu)*float64(time.Minute)/float64(wall), "cpu-ms/min")
	if switchesBefore >= 0 {
		b.ReportMetric(float64(switches)*float64(time.Minute)/float64(wall), "wakeups/min")
	}
	b.ReportMetric(float64(rssBytes(b))/(1<<20), "rss-MiB")
	b.ReportMetric(float64(heapBytes())/(1<<20), "heap-MiB")
	b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
	b.ReportMetric(wall.Seconds(), "idle-s")
	h.healthy()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// cpuTime is the user plus system CPU time of this process.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ctxSwitches is the sum of the voluntary and involuntary context switches
// of this process's threads (Linux /proc; -1 where it is missing). A thread
// that wakes up from a sleep or a wait is switched in once.
func ctxSwitches() int64 {
	tasks, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil || len(tasks) == 0 {
		return -1
	}
	var n int64
	for _, p := range tasks {
		data, err := os.ReadFile(p)
		if err != nil {
			continue // the thread ended
		}
		for _, line := range strings.Split(string(data), "\n") {
			for _, key := range []string{"voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"} {
				if rest, ok := strings.CutPrefix(line, key); ok {
					v, _ := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
					n += v
				}
			}
		}
	}
	return n
}

// rssBytes is the resident set size now (Linux: VmRSS), or the peak
// (getrusage's maxrss) where /proc is missing.
func rssBytes(tb testing.TB) int64 {
	if f, err := os.Open("/proc/self/status"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				if err == nil {
					return kb << 10
				}
			}
		}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	if runtime.GOOS == "darwin" {
		return ru.Maxrss // bytes on macOS
	}
	return ru.Maxrss << 10 // KiB elsewhere
}

// heapBytes is the memory held by live and not yet swept heap objects.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
