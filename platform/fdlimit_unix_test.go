//go:build unix

package platform

import (
	"math"
	"runtime"
	"syscall"
	"testing"
)

func TestRaisedSoftLimitRaisesAndNeverLowers(t *testing.T) {
	const unlimited = math.MaxUint64
	cases := map[string]struct {
		cur, hard uint64
		goos      string
		want      uint64
	}{
		"linux: up to the hard limit":                    {1024, 524288, "linux", 524288},
		"linux: already at the hard limit":               {524288, 524288, "linux", 524288},
		"darwin: launchd's 256, no hard limit":           {256, unlimited, "darwin", darwinOpenMax},
		"darwin: a hard limit under OPEN_MAX":            {256, 4096, "darwin", 4096},
		"darwin: the runtime raised it past OPEN_MAX":    {61440, unlimited, "darwin", 61440},
		"darwin: already at OPEN_MAX with no hard limit": {darwinOpenMax, unlimited, "darwin", darwinOpenMax},
		"linux: a soft limit above the hard one is kept": {2048, 1024, "linux", 2048},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := raisedSoftLimit(c.cur, c.hard, c.goos); got != c.want {
				t.Fatalf("raisedSoftLimit(%d, %d, %s) = %d, want %d", c.cur, c.hard, c.goos, got, c.want)
			}
		})
	}
}

func TestRaiseFileLimitLiftsALoweredSoftLimit(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig) })
	low := orig
	low.Cur = min(orig.Max, 128)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	got, err := RaiseFileLimit()
	if err != nil {
		t.Fatal(err)
	}
	var now syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now); err != nil {
		t.Fatal(err)
	}
	if uint64(got) != min(now.Cur, 1<<30) {
		t.Fatalf("RaiseFileLimit = %d, but the soft limit in force is %d", got, now.Cur)
	}
	// macOS may refuse more than kern.maxfilesperproc; Linux grants the hard limit.
	if want := raisedSoftLimit(low.Cur, orig.Max, runtime.GOOS); now.Cur != want && (runtime.GOOS == "linux" || now.Cur <= low.Cur) {
		t.Fatalf("soft limit %d after RaiseFileLimit from %d with hard %d, want %d", now.Cur, low.Cur, orig.Max, want)
	}
}
