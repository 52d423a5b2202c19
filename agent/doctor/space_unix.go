//go:build linux || darwin

package doctor

import (
	"errors"
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

// freeBytes is the space available to unprivileged writers on dir's filesystem.
func freeBytes(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}

// readOnlyFS reports whether dir is on a filesystem mounted read-only
// (access(2) says EROFS even to root, who ignores file modes).
func readOnlyFS(dir string) bool {
	return errors.Is(unix.Access(dir, unix.W_OK), unix.EROFS)
}

func owner(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
