package platform

// LowerThreadPriority puts the calling OS thread, and only it, in the
// background: the kernel gives it the CPU only when the process's other
// threads and other processes do not want it. On Linux the thread's nice
// value rises by 10, to at most 19 (setpriority on its thread id); on
// macOS the thread joins the background band (setpriority
// PRIO_DARWIN_THREAD, PRIO_DARWIN_BG). Elsewhere it returns ErrUnsupported
// and changes nothing.
//
// The caller must have locked its goroutine to the thread
// (runtime.LockOSThread) and must end that goroutine without unlocking it,
// so that Go discards the thread instead of running other goroutines on it:
// a process that is not root cannot raise a thread's priority again.
func LowerThreadPriority() error { return lowerThreadPriority() }
