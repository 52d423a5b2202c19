package platform

import "golang.org/x/sys/unix"

// On macOS PRIO_DARWIN_THREAD with who 0 names the calling thread, and
// PRIO_DARWIN_BG puts it in the background band (setpriority(2)).
func lowerThreadPriority() error {
	return unix.Setpriority(unix.PRIO_DARWIN_THREAD, 0, unix.PRIO_DARWIN_BG)
}
