package agent_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/doctor"
	"github.com/rekeyd/rekey/store"
)

// Faults: each test breaks a real part of the endpoint while the agent runs
// and checks that the agent keeps running (or refuses to start with one
// clear error), that the active credential and the tenant's data survive,
// that the import is retried or failed with a reason, and that rekey doctor
// tells the truth afterwards. docs/RELIABILITY.md lists them.

// rotationApplied waits for the rotation of import id to reach applied, after
// any number of failed attempts.
func (h *harness) rotationApplied(id string) store.Import {
	h.t.Helper()
	return h.waitImport(id, store.ImportApplied)
}

// waitFailed waits for an import to fail, recorded or not, and returns the event.
func (h *harness) waitFailed() store.Event {
	h.t.Helper()
	return h.waitFor("an import failure", func(e store.Event) bool {
		return e.Kind == store.EvImportState && e.Fields["state"] == string(store.ImportFailed)
	})
}

func TestFaultSocketPathSquatted(t *testing.T) {
	for name, squat := range map[string]func(t *testing.T, path string) (check func()){
		"regular file": func(t *testing.T, path string) func() {
			if err := os.WriteFile(path, []byte("someone's notes"), 0o644); err != nil {
				t.Fatal(err)
			}
			return func() {
				if b, err := os.ReadFile(path); err != nil || string(b) != "someone's notes" {
					t.Errorf("the squatting file was touched: %q %v", b, err)
				}
			}
		},
		"live socket of another program": func(t *testing.T, path string) func() {
			l, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Write([]byte("hello from another program\n"))
					c.Close()
				}
			}()
			return func() {
				c, err := net.Dial("unix", path)
				if err != nil {
					t.Errorf("the other program's socket no longer answers: %v", err)
					return
				}
				c.Close()
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			old, _ := h.addSynced("Prod")
			h.stop()
			untouched := squat(t, h.socket)

			a, err := agent.New(h.config())
			if err != nil {
				t.Fatal(err)
			}
			err = a.Run(context.Background())
			a.Close()
			if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), h.socket) ||
				!strings.Contains(err.Error(), "another --socket") {
				t.Fatalf("start on a squatted socket: %v; want one line naming the path and the fix", err)
			}
			t.Logf("start refused: %v", err)
			untouched()
			r := h.doctorReport(h.state)
			if name == "regular file" {
				wantDoctor(t, r, "socket", doctor.Fail, "regular file", "remove it")
			} else {
				wantDoctor(t, r, "socket", doctor.Fail, "does not answer like a rekey agent")
			}
			wantDoctor(t, r, "database", doctor.OK, "integrity ok")

			h.socket = filepath.Join(h.dir, "other.sock") // the admin picks another path
			h.start()
			if got := h.active(old.TenantID); got.ID != old.ID {
				t.Fatalf("active credential after the refused start: %+v", got)
			}
			h.healthy()
		})
	}
}

// jumpClock is wall time shifted by an offset the test changes.
type jumpClock struct{ off atomic.Int64 }

func (c *jumpClock) Now() time.Time        { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *jumpClock) jump(d time.Duration)  { c.off.Add(int64(d)) }
func withClock(c *jumpClock) harnessOption { return func(cfg *agent.Config) { cfg.Clock = c } }

func TestFaultClockJumpsDuringRotation(t *testing.T) {
	for name, jump := range map[string]time.Duration{"back a day": -24 * time.Hour, "forward a year": 365 * 24 * time.Hour} {
		t.Run(name, func(t *testing.T) {
			clk := &jumpClock{}
			chk := &onCheck{}
			h := newHarness(t, withClock(clk), withChecker(chk))
			old, data := h.addSynced("Prod")

			chk.set(func() { clk.jump(jump) }) // between staged and validated
			k2 := h.key(old.ClientID)
			h.push(h.entry("Prod", "update", "", k2, testPassphrase))
			imp := h.waitImport("", store.ImportApplied)
			h.waitFor("confirmation", func(e store.Event) bool {
				return e.Kind == store.EvRotationConfirmed
			})
			now := h.active(old.TenantID)
			if now.KeyID != k2.KeyID {
				t.Fatalf("active credential %+v, want the new one", now)
			}
			creds, _ := h.agent.Store().Credentials(context.Background())
			for _, c := range creds {
				if c.ID == old.ID && (c.State != store.CredRetired || c.HasKey) {
					t.Fatalf("old credential %+v, want retired with its key wiped", c)
				}
			}
			if got := h.tenantData(old.TenantID); got != data {
				t.Fatalf("tenant data %v, was %v", got, data)
			}
			if imp.State != store.ImportApplied {
				t.Fatalf("import %+v", imp)
			}
			h.healthy()                                 // on the agent's (jumped) clock
			if r := h.doctorReport(h.state); r.Failed { // on the real clock
				t.Fatalf("doctor fails after the jump: %+v", r.Findings)
			}
		})
	}
}

func TestFaultPassphraseFileBreaksMidRun(t *testing.T) {
	for name, c := range map[string]struct {
		breakIt func(path string) error
		reason  string
		level   doctor.Level
	}{
		"deleted":        {os.Remove, "does not exist", doctor.Warn},
		"group-readable": {func(p string) error { return os.Chmod(p, 0o640) }, "mode 0640", doctor.Fail},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			old, _ := h.addSynced("Prod")
			if err := c.breakIt(h.pass); err != nil {
				t.Fatal(err)
			}
			k2 := h.key(old.ClientID)
			h.push(h.entry("Prod", "update", "", k2, testPassphrase))
			imp := h.waitImport("", store.ImportPendingUnlock)
			if !strings.Contains(imp.Reason, h.pass) || !strings.Contains(imp.Reason, c.reason) {
				t.Fatalf("pending-unlock reason %q does not name the file problem %q", imp.Reason, c.reason)
			}
			if strings.Contains(imp.Reason, testPassphrase) {
				t.Fatal("the reason shows the passphrase")
			}
			if got := h.active(old.TenantID); got.ID != old.ID {
				t.Fatalf("active credential changed: %+v", got)
			}
			wantDoctor(t, h.doctorReport(h.state), "passphrase-file", c.level, h.pass)

			cl := api.NewClient(h.socket) // a UI unlocks it
			defer cl.Close()
			if _, err := cl.Unlock(context.Background(), imp.ID, api.UnlockRequest{Password: api.Secret(testPassphrase)}); err != nil {
				t.Fatalf("unlock: %v", err)
			}
			h.waitImport(imp.ID, store.ImportApplied)
			if got := h.active(old.TenantID); got.KeyID != k2.KeyID {
				t.Fatalf("not rotated after the unlock: %+v", got)
			}
			h.healthy()
		})
	}
}

func TestFaultPrefsFolderBecomesLinkToUserFolder(t *testing.T) {
	h := newHarness(t)
	old, _ := h.addSynced("Prod")
	user := filepath.Join(h.dir, "userplace")
	if err := os.Mkdir(user, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(user, 0o777); err != nil { // any local user can write here
		t.Fatal(err)
	}
	k2 := h.key(old.ClientID)
	real := h.prefs
	h.prefs = user // push writes the hostile payload there
	h.push(h.entry("Prod", "update", "", k2, testPassphrase))
	h.prefs = real
	aside := real + ".aside"
	if err := os.Rename(real, aside); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(user, real); err != nil {
		t.Fatal(err)
	}
	h.agent.Rescan()
	e := h.waitFor("the payload refused", func(e store.Event) bool { return e.Kind == store.EvSourceRefused })
	if !strings.Contains(e.Message, "writable by group or others") {
		t.Errorf("refusal %q does not name the problem", e.Message)
	}
	imps, err := h.agent.Store().Imports(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(imps) != 1 {
		t.Fatalf("the refused payload was recorded: %+v", imps)
	}
	if got := h.active(old.TenantID); got.ID != old.ID {
		t.Fatalf("active credential changed: %+v", got)
	}
	wantDoctor(t, h.doctorReport(h.state), "managed-prefs", doctor.Fail, "leads to", "refused")
	h.healthy()
}

// A stop request that arrives while the agent is still recovering (a service
// manager stopping it right after start) is a clean stop, not an error.
func TestRunStoppedBeforeRecoveryEndsIsACleanStop(t *testing.T) {
	h := newHarness(t)
	h.addSynced("Prod")
	h.stop()
	a, err := agent.New(h.config())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Run(ctx); err != nil {
		t.Fatalf("run stopped during recovery: %v", err)
	}
}
