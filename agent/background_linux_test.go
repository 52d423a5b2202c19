package agent

import (
	"errors"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/agent/payload"
)

// niceOf returns the nice value of thread tid of this process (-100 when
// it cannot be read).
func niceOf(tid int) int {
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid) // the system call's 20 - nice
	if err != nil {
		return -100
	}
	return 20 - prio
}

func TestBackgroundRunsOnALowerPriorityThreadWithASlotOfItsOwn(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	mine := unix.Gettid()
	procs := runtime.GOMAXPROCS(0)
	var tid, nice, during int
	background(func() {
		tid, during = unix.Gettid(), runtime.GOMAXPROCS(0)
		nice = niceOf(tid)
	})
	if tid == mine {
		t.Fatal("background work ran on the caller's thread")
	}
	if want := min(niceOf(mine)+10, 19); nice != want {
		t.Errorf("background thread's nice value %d, want %d", nice, want)
	}
	if during != procs+1 {
		t.Errorf("GOMAXPROCS during background work %d, want %d", during, procs+1)
	}
	if now := runtime.GOMAXPROCS(0); now != procs {
		t.Errorf("GOMAXPROCS after background work %d, want %d again", now, procs)
	}
	// The thread is discarded, not handed back to Go's pool: it exits
	// once its goroutine has (just after background returns). The main
	// thread (tid = pid) cannot exit: Go parks it for good instead.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid)); errors.Is(err, fs.ErrNotExist) || tid == os.Getpid() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("background thread %d still exists 10 s after its work", tid)
		}
		time.Sleep(time.Millisecond) // the OS ending the thread is what we wait for
	}
}

func TestBackgroundWorkAtOnceSharesOneExtraSlot(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	const n = 4
	var inside, wg sync.WaitGroup
	inside.Add(n)
	release := make(chan struct{})
	seen := make(chan int, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			background(func() {
				inside.Done()
				<-release
				seen <- runtime.GOMAXPROCS(0)
			})
		}()
	}
	inside.Wait()
	close(release)
	wg.Wait()
	close(seen)
	for got := range seen {
		if got != procs+1 {
			t.Errorf("GOMAXPROCS with %d pieces of background work %d, want %d", n, got, procs+1)
		}
	}
	if now := runtime.GOMAXPROCS(0); now != procs {
		t.Errorf("GOMAXPROCS after the background work %d, want %d again", now, procs)
	}
}

func TestBackgroundKeepsAGOMAXPROCSSetByTheEnvironment(t *testing.T) {
	t.Setenv("GOMAXPROCS", "3")
	runtime.GOMAXPROCS(3)
	t.Cleanup(runtime.SetDefaultGOMAXPROCS)
	background(func() {
		if got := runtime.GOMAXPROCS(0); got != 4 {
			t.Errorf("GOMAXPROCS during background work %d, want 4", got)
		}
	})
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Errorf("GOMAXPROCS after background work %d, want the environment's 3", got)
	}
}

func TestOnlyLongKeyDerivationsRunInTheBackground(t *testing.T) {
	k, err := appletest.GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	seal := func(workFactor int) []byte {
		t.Helper()
		ct, err := payload.Seal(payload.SealInput{Name: "Acme", ClientID: k.ClientID, KeyID: k.KeyID, KeyPEM: k.PEM},
			"pass", workFactor)
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	short, long := seal(backgroundWorkFactor-1), seal(backgroundWorkFactor)
	for _, c := range []struct {
		name string
		ct   []byte
		max  int
		want bool
	}{
		{"short derivation", short, 18, false},
		{"long derivation", long, 18, true},
		{"over the agent's cap: refused before any derivation", long, backgroundWorkFactor - 1, false},
		{"not age", []byte("not an age file"), 18, false},
	} {
		if got := inBackground(c.ct, c.max); got != c.want {
			t.Errorf("%s: in background %v, want %v", c.name, got, c.want)
		}
	}
	for _, ct := range [][]byte{short, long} {
		cred, err := openPayload(ct, []string{"wrong", "pass"}, 18)
		if err != nil || cred.Name != "Acme" {
			t.Fatalf("openPayload: %+v, %v", cred, err)
		}
		cred.Wipe()
		if _, err := openPayload(ct, []string{"wrong"}, 18); !errors.Is(err, payload.ErrWrongPassphrase) {
			t.Fatalf("openPayload with a wrong passphrase: %v, want ErrWrongPassphrase", err)
		}
	}
}
