package agent_test

import (
	"context"
	"database/sql"
	"errors"
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

// rotationDone waits for the rotation of import id to reach applied, after
// any number of failed attempts.
func (h *harness) rotationApplied(id string) store.Import {
	h.t.Helper()
	return h.waitImport(id, store.ImportApplied)
}

// waitFailed waits for an import to fail, recorded or not, and returns the event.
func (h *harness) waitFailed() store.Event {
	h.t.Helper()
	return h.waitFor("an import failure", func(e store.Event) bool {
		return e.Kind == agent.EvImportState && e.Fields["state"] == string(store.ImportFailed)
	})
}

func TestFaultDiskFullDuringCutover(t *testing.T) {
	mnt := mountTmpfs(t, "2m")
	chk := &onCheck{}
	h := newHarness(t, withState(mnt), withChecker(chk), quickRetry)
	old, data := h.addSynced("Prod")

	var filler string
	chk.set(func() { filler = fill(t, mnt) }) // the disk fills between staged and validated
	k2 := h.key(old.ClientID)
	h.push(h.entry("Prod", "update", "", k2, testPassphrase))
	failed := h.waitFailed()
	t.Logf("failure while full: %s", failed.Message)
	if !strings.Contains(failed.Message, "full") {
		t.Errorf("failure %q does not say the disk is full", failed.Message)
	}
	if got := h.active(old.TenantID); got.ID != old.ID {
		t.Fatalf("active credential changed while the disk was full: %+v", got)
	}
	wantDoctor(t, h.doctorReport(mnt), "state-folder", doctor.Fail, "bytes free", "free space")

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	h.rotationApplied(failed.ImportID)
	if got := h.active(old.TenantID); got.KeyID != k2.KeyID {
		t.Fatalf("after space was freed the new credential is not active: %+v", got)
	}
	if got := h.tenantData(old.TenantID); got != data {
		t.Fatalf("tenant data %v, was %v", got, data)
	}
	h.healthy()
	if r := h.doctorReport(mnt); r.Failed {
		t.Fatalf("doctor fails a healthy endpoint: %+v", r.Findings)
	}
}

// Linux refuses to remount a filesystem read-only while files on it are open
// for writing (EBUSY), and the agent keeps its database open: a state folder
// turns read-only under a running agent only by a forced remount after disk
// errors. What an admin meets is the agent (re)starting on a read-only folder.
func TestFaultStateFolderReadOnlyAtStart(t *testing.T) {
	mnt := mountTmpfs(t, "16m")
	h := newHarness(t, withState(mnt))
	old, data := h.addSynced("Prod")
	h.stop()
	remount(t, mnt, "ro")

	cfg := h.config()
	cfg.StateDir = mnt
	a, err := agent.New(cfg)
	if err == nil {
		err = a.Run(context.Background())
		a.Close()
	}
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("start on a read-only state folder: %v; want one line naming the read-only filesystem", err)
	}
	t.Logf("start refused: %v", err)
	wantDoctor(t, h.doctorReport(mnt), "state-folder", doctor.Fail, "read-only", "remount")
	wantDoctor(t, h.doctorReport(mnt), "database", doctor.OK, "integrity ok")

	remount(t, mnt, "rw")
	h.start(withState(mnt))
	if got := h.active(old.TenantID); got.ID != old.ID {
		t.Fatalf("active credential after the remount: %+v, want %s", got, old.ID)
	}
	if got := h.tenantData(old.TenantID); got != data {
		t.Fatalf("tenant data %v, was %v", got, data)
	}
	k2 := h.key(old.ClientID)
	h.push(h.entry("Prod", "update", "", k2, testPassphrase))
	h.waitImport("", store.ImportApplied)
	h.healthy()
	if r := h.doctorReport(mnt); r.Failed {
		t.Fatalf("doctor fails a healthy endpoint: %+v", r.Findings)
	}
}

// backupDB copies the live database consistently (VACUUM INTO) to a file
// beside the state folder and returns its path.
func backupDB(t *testing.T, h *harness) string {
	t.Helper()
	dst := filepath.Join(h.dir, "backup.db")
	db, err := sql.Open("sqlite", "file:"+h.agent.Store().Path()+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`VACUUM INTO ?`, dst); err != nil {
		t.Fatalf("back up the database: %v", err)
	}
	return dst
}

func TestFaultDatabaseFileGoneWhileRunning(t *testing.T) {
	for name, breakIt := range map[string]func(t *testing.T, db string){
		"deleted": func(t *testing.T, db string) {
			if err := os.Remove(db); err != nil {
				t.Fatal(err)
			}
		},
		"replaced": func(t *testing.T, db string) {
			junk := db + ".junk"
			if err := os.WriteFile(junk, []byte(strings.Repeat("not a database ", 100)), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(junk, db); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, quickRetry)
			old, data := h.addSynced("Prod")
			backup := backupDB(t, h)
			db := h.agent.Store().Path()
			breakIt(t, db)

			k2 := h.key(old.ClientID)
			h.push(h.entry("Prod", "update", "", k2, testPassphrase))
			failed := h.waitFailed()
			t.Logf("failure: %s", failed.Message)
			if !strings.Contains(failed.Message, "deleted or replaced") {
				t.Errorf("failure %q does not say the database file is gone", failed.Message)
			}
			if got := h.active(old.TenantID); got.ID != old.ID {
				t.Fatalf("active credential changed: %+v", got)
			}
			r := h.doctorReport(h.state)
			if name == "deleted" {
				wantDoctor(t, r, "database", doctor.Fail, "missing but the sealing key is there", "restore")
			} else {
				wantDoctor(t, r, "database", doctor.Fail, "not a rekey database", "restore")
			}

			h.stop()
			if name == "replaced" { // the agent refuses the junk with one line
				_, err := agent.New(h.config())
				if err == nil || !errors.Is(err, store.ErrNotDatabase) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("start on a replaced database: %v", err)
				}
			}
			restore(t, backup, db)
			h.start(quickRetry)
			if got := h.active(old.TenantID); got.ID != old.ID {
				t.Fatalf("active credential after the restore: %+v", got)
			}
			if got := h.tenantData(old.TenantID); got != data {
				t.Fatalf("tenant data %v, was %v", got, data)
			}
			h.waitImport(failed.ImportID, store.ImportApplied) // the payload is still there: retried
			if got := h.active(old.TenantID); got.KeyID != k2.KeyID {
				t.Fatalf("the update was not applied after the restore: %+v", got)
			}
			h.healthy()
			if r := h.doctorReport(h.state); r.Failed {
				t.Fatalf("doctor fails the restored endpoint: %+v", r.Findings)
			}
		})
	}
}

// restore puts a backup in place of the database, as an admin would with
// the agent stopped.
func restore(t *testing.T, backup, db string) {
	t.Helper()
	for _, side := range []string{"-wal", "-shm"} {
		os.Remove(db + side)
	}
	data, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db+".restore", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(db+".restore", db); err != nil {
		t.Fatal(err)
	}
}

func TestFaultWriteLockHeldPastBusyTimeout(t *testing.T) {
	h := newHarness(t, quickRetry, func(c *agent.Config) { c.BusyTimeout = 300 * time.Millisecond })
	old, data := h.addSynced("Prod")
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+h.agent.Store().Path()+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	locked := true
	unlock := func() {
		if locked {
			locked = false
			if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer unlock()

	k2 := h.key(old.ClientID)
	h.push(h.entry("Prod", "update", "", k2, testPassphrase))
	failed := h.waitFailed() // after the busy timeout
	if !strings.Contains(failed.Message, "locked") {
		t.Errorf("failure %q does not say the database is locked", failed.Message)
	}
	if got := h.active(old.TenantID); got.ID != old.ID {
		t.Fatalf("active credential changed: %+v", got)
	}
	r := h.doctorReport(h.state) // readers are not blocked by a writer
	wantDoctor(t, r, "database", doctor.OK, "integrity ok")
	wantDoctor(t, r, "socket", doctor.OK, "answers")

	unlock()
	h.waitImport(failed.ImportID, store.ImportApplied)
	if got := h.active(old.TenantID); got.KeyID != k2.KeyID {
		t.Fatalf("the update was not applied after the lock was released: %+v", got)
	}
	if got := h.tenantData(old.TenantID); got != data {
		t.Fatalf("tenant data %v, was %v", got, data)
	}
	h.healthy()
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
func withClock(c *jumpClock) harnessOption { return func(cfg *agent.Config) { cfg.Now = c.Now } }

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
				return e.Kind == agent.EvRotationStep && e.Fields["step"] == string(store.StepConfirmed)
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
	e := h.waitFor("the payload refused", func(e store.Event) bool { return e.Kind == agent.EvSourceRefused })
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
