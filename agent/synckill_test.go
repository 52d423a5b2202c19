package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/store"
)

// The SIGKILL resume test runs a sync in a child process (this test binary,
// re-executed) that kills itself right after the batch that stores its Nth
// coverage read is committed, as a power loss in the middle of a sync would.
// With envScale* set, the child runs on the parent's scaled clock at
// Apple's pace (the benchmarks).
const (
	envSyncKillTenant = "REKEY_TEST_SYNC_KILL_TENANT"
	envSyncKillAfter  = "REKEY_TEST_SYNC_KILL_AFTER"
	envScale          = "REKEY_TEST_SCALE"       // how much faster than real time
	envScaleStart     = "REKEY_TEST_SCALE_START" // the scaled clock's start, Unix ns
	envScaleReal0     = "REKEY_TEST_SCALE_REAL0" // the real time it started, Unix ns
)

// syncKillChild syncs tenant on the parent's folders and dies once N
// coverage reads are stored. Reaching the end means it never got there:
// exit status 3.
func syncKillChild(tenant string) int {
	after, _ := strconv.Atoi(os.Getenv(envSyncKillAfter))
	var stored atomic.Int64
	agent.SetCrashHook(func(p string) {
		if p == "sync.coverage" && stored.Add(1) == int64(after) {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	})
	cfg := agent.Config{AppleRequestsPerMinute: 1e9,
		PrefsDir: os.Getenv(envCrashPrefs), StateDir: os.Getenv(envCrashState), PassphraseFile: os.Getenv(envCrashPass),
		Debounce: 10 * time.Millisecond, Settle: 50 * time.Millisecond, Version: "sync-kill-child",
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}
	if scale, _ := strconv.ParseFloat(os.Getenv(envScale), 64); scale > 0 {
		start, _ := strconv.ParseInt(os.Getenv(envScaleStart), 10, 64)
		real0, _ := strconv.ParseInt(os.Getenv(envScaleReal0), 10, 64)
		clk := appletest.ScaledClockFrom(time.Unix(0, start), time.Unix(0, real0), scale)
		cfg.AppleRequestsPerMinute, cfg.Clock, cfg.AppleSleep = 0, clk, clk.Sleep
	}
	a, err := agent.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sync child:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute) // the parent's timeout decides
	defer cancel()
	events, _ := a.Subscribe(64)
	go a.Run(ctx)
	for e := range events { // the payload's settings name the fake Apple
		if e.Kind == store.EvSourceRead {
			break
		}
	}
	err = a.SyncTenant(ctx, tenant)
	fmt.Fprintf(os.Stderr, "sync child: batch %d never reached (sync: %v)\n", after, err)
	return 3
}

// killSyncAt runs the child until it kills itself after n stored reads;
// env adds to its environment (the scaled clock).
func (h *harness) killSyncAt(tenant string, n int, env ...string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), envSyncKillTenant+"="+tenant, envSyncKillAfter+"="+strconv.Itoa(n),
		envCrashPrefs+"="+h.prefs, envCrashState+"="+h.state, envCrashPass+"="+h.pass)
	cmd.Env = append(cmd.Env, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ctx.Err() != nil {
		h.t.Fatalf("sync child: %v (timed out: %v)\n%s", err, ctx.Err() != nil, out.String())
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		h.t.Fatalf("sync child did not die by SIGKILL: %v\n%s", err, out.String())
	}
}

func TestSyncKilledHalfwayResumesWithoutAskingAppleAgain(t *testing.T) {
	const n = 2000
	h := newHarness(t)
	tenant := addTenant(t, h, n)
	h.stop()
	half := n / 2
	h.killSyncAt(tenant, half)

	st, err := store.Open(h.state, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ten, err := st.Tenant(context.Background(), tenant)
	fresh, _ := st.CoverageFreshness(context.Background(), tenant, time.Now())
	if problems, _ := st.Check(context.Background(), time.Hour); err != nil || len(problems) > 0 {
		t.Fatalf("store after SIGKILL: %v %+v", err, problems)
	}
	st.Close()
	read := n - fresh.Never
	if !ten.SyncListed || ten.Counts.Devices != n || read < half || read > half+apple.DefaultBatchSize {
		t.Fatalf("after SIGKILL: listed %v, %d devices, %d read; want the list and about half the coverage", ten.SyncListed, ten.Counts.Devices, read)
	}
	killed := h.apple.Stats()

	h.start()
	h.waitFor("payload read", isKind(store.EvSourceRead))
	if err := h.agent.SyncTenant(context.Background(), tenant); err != nil {
		t.Fatalf("resumed sync: %v", err)
	}
	if e := h.waitFor("resumed start", isKind(store.EvSyncStarted)); e.Fields["resumed"] != "true" {
		t.Fatalf("start %+v", e)
	}
	now := h.apple.Stats()
	if pages, covs := now.DeviceRequests-killed.DeviceRequests, now.CoverageRequests-killed.CoverageRequests; pages != 0 || covs != n-read {
		t.Fatalf("resume read %d pages and %d coverage answers; want 0 and the %d not stored", pages, covs, n-read)
	}
	// Lost to the kill: what was in flight or read but not yet committed.
	if lost := now.CoverageRequests - n; lost > apple.DefaultBatchSize+16 {
		t.Fatalf("%d coverage requests for %d devices: the kill lost %d", now.CoverageRequests, n, lost)
	}
	wantRecords(t, h.agent.Store(), tenant, n)
	wantAppleShapes(t, h.agent.Store(), tenant, n)
	h.healthy()
}
