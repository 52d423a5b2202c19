package platform

import "golang.org/x/sys/unix"

// On Linux each thread is a task with its own nice value; PRIO_PROCESS
// with a thread id reads and sets that thread's alone. The thread's nice
// value rises by 10, to at most 19, from what it inherited: a thread of an
// agent an admin started with nice 5 goes to 15, never back up.
func lowerThreadPriority() error {
	tid := unix.Gettid()
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid) // the system call's 20 - nice
	if err != nil {
		return err
	}
	return unix.Setpriority(unix.PRIO_PROCESS, tid, min(20-prio+10, 19))
}
