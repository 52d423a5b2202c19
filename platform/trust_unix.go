//go:build unix

package platform

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// openNoBlock opens path read-only without blocking on a FIFO or device, so
// that the type check on the descriptor can refuse it.
func openNoBlock(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}

func ownerOf(fi fs.FileInfo) (int, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("no owner information for %s", fi.Name())
	}
	return int(st.Uid), nil
}
