package agent_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/doctor"
	"github.com/rekeyd/rekey/store"
)

// mountTmpfs mounts a tmpfs of size (e.g. "4m") on a new folder and unmounts
// it when the test ends. Mounting needs root; as root a failure to mount
// fails the test.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root (CI runs these tests as root)")
	}
	dir, err := os.MkdirTemp("", "rkfs")
	if err != nil {
		t.Fatal(err)
	}
	run(t, "mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
		os.Remove(dir)
	})
	return dir
}

// remount switches a mount to "ro" or "rw".
func remount(t *testing.T, dir, mode string) {
	t.Helper()
	run(t, "mount", "-o", "remount,"+mode, dir)
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// fill writes a file in dir until the filesystem has no space left and
// returns its path. It may run on the agent's goroutine (from a hook), so it
// reports problems with Errorf, never Fatal.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Errorf("create filler: %v", err)
		return path
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("fill %s: %v", dir, err)
			}
			break
		}
	}
	small := make([]byte, 512)
	for { // the last partial blocks
		if _, err := f.Write(small); err != nil {
			return path
		}
	}
}

// onCheck is a Checker that accepts every credential after running hook (set
// by the test at the moment it wants to break something mid-rotation).
type onCheck struct {
	mu   sync.Mutex
	hook func()
}

func (c *onCheck) set(f func()) { c.mu.Lock(); c.hook = f; c.mu.Unlock() }

func (c *onCheck) Check(ctx context.Context, _ agent.AuthTarget) apple.CheckResult {
	c.mu.Lock()
	f := c.hook
	c.hook = nil
	c.mu.Unlock()
	if f != nil {
		f()
	}
	return apple.CheckResult{Outcome: apple.Accepted}
}

// withChecker runs auth checks through c.
func withChecker(c agent.Checker) harnessOption { return func(cfg *agent.Config) { cfg.Checker = c } }

// withState puts the state folder at dir.
func withState(dir string) harnessOption { return func(cfg *agent.Config) { cfg.StateDir = dir } }

// quickRetry retries transient failures after a few milliseconds.
func quickRetry(cfg *agent.Config) {
	cfg.Backoff = func(int) time.Duration { return 20 * time.Millisecond }
}

// doctorReport runs rekey doctor's checks on the harness's paths.
func (h *harness) doctorReport(state string) doctor.Report {
	h.t.Helper()
	return doctor.Run(context.Background(), doctor.Config{StateDir: state, PrefsDir: h.prefs,
		PassphraseFile: h.pass, Socket: h.socket, Owners: []int{os.Geteuid()}})
}

// wantDoctor fails unless doctor's verdict on check is level, with words in it.
func wantDoctor(t testing.TB, r doctor.Report, check string, level doctor.Level, words ...string) {
	t.Helper()
	for _, f := range r.Findings {
		if f.Check != check || f.Level != level {
			continue
		}
		all := true
		for _, w := range words {
			all = all && strings.Contains(f.Message+" "+f.Fix, w)
		}
		if all {
			return
		}
	}
	var b strings.Builder
	r.WriteText(&b)
	t.Fatalf("doctor: no %s %s finding with %q:\n%s", level, check, words, b.String())
}

// tenantData is a tenant's device and coverage counts.
func (h *harness) tenantData(tenantID string) [2]int {
	h.t.Helper()
	d, c, err := h.agent.Store().Counts(context.Background(), tenantID)
	if err != nil {
		h.t.Fatal(err)
	}
	return [2]int{d, c}
}

// addSynced adds a credential from a payload and waits for its first sync,
// returning the active credential and the tenant's data counts.
func (h *harness) addSynced(name string) (store.Credential, [2]int) {
	h.t.Helper()
	k := h.key("")
	h.push(h.entry(name, "add", "", k, testPassphrase))
	h.waitImport("", store.ImportApplied)
	h.waitFor("first sync", func(e store.Event) bool { return e.Kind == store.EvSyncFinished })
	cred := h.active("")
	data := h.tenantData(cred.TenantID)
	if data[0] == 0 {
		h.t.Fatal("the first sync imported no device")
	}
	return cred, data
}
