package agent_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/doctor"
	"github.com/rekeyd/rekey/store"
)

// Store faults: the state folder fills up or turns read-only, the database
// file goes away, another process holds its write lock.

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
				wantDoctor(t, r, "database", doctor.Fail, "seal.key is there but rekey.db is missing", "restore")
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
	db, err := sql.Open("sqlite", "file:"+h.agent.Store().Path()+"?_pragma=busy_timeout(10000)") // wait out the agent's own writes to take the lock
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
