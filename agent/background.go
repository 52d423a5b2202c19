package agent

import (
	"os"
	"runtime"
	"sync"

	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/platform"
)

// Background work: a payload's key derivation (scrypt) is the heaviest
// thing the agent does, about a second of CPU and 256 MiB at the work
// factor `rekey seal` writes by default (18). Run as any other goroutine it
// holds one of the Go scheduler's slots (GOMAXPROCS, one per core) for that
// second, and the local API's answers queue behind it: at 20,000 status
// requests a second the p99 was 20 ms while payloads at work factor 18
// were decrypted, 6–9 ms as background work (docs/agent.md, "Key
// derivation runs in the background"). background runs such work on an OS
// thread of its own at a lower priority (platform.LowerThreadPriority),
// with one scheduler slot more than usual while it runs, so that the API
// keeps the slots it had and the kernel gives the derivation the CPU the
// rest leaves. The thread is discarded afterwards (its goroutine ends
// locked to it): the lowered priority could not be raised again without
// privilege.

// backgroundWorkFactor is the least scrypt work factor whose derivation
// runs as background work: from 13 on it takes over 10 ms (20 ms at 13,
// 40 ms at 14, a second at 18, on the machine of docs/BENCHMARKS.md),
// longer than the slice after which Go's scheduler preempts a goroutine.
// A shorter one runs on the caller's goroutine: there the thread and the
// scheduler slot cost more than they save (with payloads at work factor 10
// rotated flat out, a status answer's median rose from 33 to 48 µs and
// rotations fell from 80 to 65 a second).
const backgroundWorkFactor = 13

// openPayload decrypts a payload entry's ciphertext (payload.Decrypt), as
// background work when its work factor is backgroundWorkFactor or more.
func openPayload(ciphertext []byte, passphrases []string, maxWorkFactor int) (*payload.Credential, error) {
	var cred *payload.Credential
	var err error
	open := func() { cred, err = payload.Decrypt(ciphertext, passphrases, maxWorkFactor) }
	if inBackground(ciphertext, maxWorkFactor) {
		background(open)
	} else {
		open()
	}
	return cred, err
}

// inBackground reports whether opening ciphertext derives a key long
// enough for background work; not when Decrypt refuses its header before
// any derivation (damaged, or over maxWorkFactor).
func inBackground(ciphertext []byte, maxWorkFactor int) bool {
	n, err := payload.WorkFactor(ciphertext)
	return err == nil && n >= backgroundWorkFactor && n <= maxWorkFactor
}

// extraProcs counts the work holding the extra slot (background work and
// changes being acted on, withExtraSlot); while it is above zero
// GOMAXPROCS is one more than it was before the first began.
var extraProcs struct {
	sync.Mutex
	running int
	before  int
}

// withExtraSlot runs fn with one Go scheduler slot (GOMAXPROCS) more than
// the process had, shared with background work running at the same time.
// The agent acts on a change this way (a payload, an unlock, a retry, a
// manual rotation): Go's scheduler runs a goroutine until it blocks or
// 10 ms pass, so with one slot per core the change's bursts of CPU (a
// scrypt below the background threshold, SQLite's commits, the events)
// each hold a slot while the local API's answers wait in its queue; with
// one slot more the kernel time-slices them with the answers. Measured
// against `rekey run` with 200 clients at 20,000 status requests a second
// and ten rotations a second: p99 6.0–6.9 ms without, 4.2–5.4 ms with it
// (docs/BENCHMARKS.md, "One scheduler slot more"). Only while a change is
// acted on: a slot more all the time made device pages, a single
// goroutine's burst of CPU, 1–2 ms slower at p99.
func withExtraSlot(fn func()) {
	addProc()
	defer dropProc()
	fn()
}

// background runs fn as background work and returns when it has returned.
func background(fn func()) {
	addProc()
	defer dropProc()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()         // never unlocked: the thread ends with this goroutine
		platform.LowerThreadPriority() // ErrUnsupported elsewhere: fn runs all the same
		fn()
	}()
	<-done
}

func addProc() {
	extraProcs.Lock()
	defer extraProcs.Unlock()
	if extraProcs.running == 0 {
		extraProcs.before = runtime.GOMAXPROCS(0)
		runtime.GOMAXPROCS(extraProcs.before + 1)
	}
	extraProcs.running++
}

// dropProc gives the slot back when the last work holding it ends: the
// runtime's default (which follows the CPUs and the cgroup's quota) unless
// the GOMAXPROCS environment variable set the number, which is then kept.
func dropProc() {
	extraProcs.Lock()
	defer extraProcs.Unlock()
	if extraProcs.running--; extraProcs.running > 0 {
		return
	}
	if os.Getenv("GOMAXPROCS") != "" {
		runtime.GOMAXPROCS(extraProcs.before)
		return
	}
	runtime.SetDefaultGOMAXPROCS()
}
