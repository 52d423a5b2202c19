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
// and returns the soft limit in force afterwards.
func RaiseFileLimit() (int, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read open-file limit: %w", err)
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = lim.Max
		if runtime.GOOS == "darwin" {
			want.Cur = min(lim.Max, darwinOpenMax)
		}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
			lim = want
		}
	}
	return int(min(lim.Cur, 1<<30)), nil
}
