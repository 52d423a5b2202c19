package agent_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/agent"
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

var _ = context.Background
var _ = agent.EvSourceRefused

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
