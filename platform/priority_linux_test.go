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
func threadNice(t *testing.T, tid int) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	n, err := strconv.Atoi(f[16]) // field 19, counted after the command name
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestLowerThreadPriorityLowersOnlyTheCallingThread(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	mine := unix.Gettid()
	before := threadNice(t, mine)

	type result struct {
		tid, nice int
		err       error
	}
	done := make(chan result)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		err := platform.LowerThreadPriority()
		tid := unix.Gettid()
		done <- result{tid, threadNice(t, tid), err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("LowerThreadPriority: %v", r.err)
	}
	if r.tid == mine {
		t.Fatal("the background goroutine ran on the test's own thread")
	}
	if want := min(before+10, 19); r.nice != want {
		t.Fatalf("background thread's nice value is %d; want %d (10 more than the test thread's %d, at most 19)", r.nice, want, before)
	}
	if now := threadNice(t, mine); now != before {
		t.Fatalf("the calling test thread's nice value changed from %d to %d", before, now)
	}
}
