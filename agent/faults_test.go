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
