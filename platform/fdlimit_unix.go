//go:build unix

package platform

import (
	"fmt"
	"runtime"
	"syscall"
)

// darwinOpenMax is the most a process may ask for on macOS, whose hard
// limit is often "unlimited" while the kernel caps each process.
const darwinOpenMax = 10240

// RaiseFileLimit raises the soft limit on open files toward the hard limit
// and returns the soft limit in force afterwards. It never lowers it: the Go
// runtime has often raised it already (on macOS up to kern.maxfilesperproc,
// which may pass darwinOpenMax).
func RaiseFileLimit() (int, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read open-file limit: %w", err)
	}
	if want := raisedSoftLimit(lim.Cur, lim.Max, runtime.GOOS); want > lim.Cur {
		next := lim
		next.Cur = want
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err == nil {
			lim = next
		}
	}
	return int(min(lim.Cur, 1<<30)), nil
}

// raisedSoftLimit is the soft limit to ask for on goos given the current soft
// and hard limits: the hard one (at most darwinOpenMax on macOS), or cur when
// that is no higher.
func raisedSoftLimit(cur, hard uint64, goos string) uint64 {
	want := hard
	if goos == "darwin" {
		want = min(hard, darwinOpenMax)
	}
	return max(cur, want)
}
