package platform_test

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rekeyd/rekey/platform"
)

// threadNice reads the nice value of thread tid of this process from
// /proc (field 19 of its stat).
func threadNice(tid int) (int, error) {
	data, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/stat")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	return strconv.Atoi(f[16]) // field 19, counted after the command name
}

func TestLowerThreadPriorityLowersOnlyTheCallingThread(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	mine := unix.Gettid()
	before, err := threadNice(mine)
	if err != nil {
		t.Fatal(err)
	}

	type result struct {
		tid, nice      int
		lowerErr, rErr error
	}
	done := make(chan result)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		r := result{tid: unix.Gettid(), lowerErr: platform.LowerThreadPriority()}
		r.nice, r.rErr = threadNice(r.tid)
		done <- r
	}()
	r := <-done
	if r.lowerErr != nil || r.rErr != nil {
		t.Fatalf("LowerThreadPriority: %v; reading the nice value: %v", r.lowerErr, r.rErr)
	}
	if r.tid == mine {
		t.Fatal("the background goroutine ran on the test's own thread")
	}
	if want := min(before+10, 19); r.nice != want {
		t.Fatalf("background thread's nice value is %d; want %d (10 more than the test thread's %d, at most 19)", r.nice, want, before)
	}
	if now, err := threadNice(mine); err != nil || now != before {
		t.Fatalf("the calling test thread's nice value changed from %d to %d (%v)", before, now, err)
	}
}
