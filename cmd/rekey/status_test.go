package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/store"
)

func TestStatusHumanOutput(t *testing.T) {
	sock := startAgent(t, fakeAgent())
	code, out, errOut := runAt(t, sock, "", "status")
	if code != exitOK {
		t.Fatalf("code %d: %s", code, errOut)
	}
	for _, want := range []string{
		"rekey 1.2.3, pid 4242",
		"problem: other.plist: owned by uid 501",
		"Tenant     Acme (t1, business.api)",
		"active     Acme 2026  BUSINESSAPI.9f1c  key k-2026",
		"previous   Acme 2025",
		"1200 devices, 950 coverage records",
		"Pending imports: 1",
		"rekey unlock i9",
		"Last rotation: r1 in tenant t1, cutover",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
}

func TestStatusJSONIsTheAPIAnswer(t *testing.T) {
	f := fakeAgent()
	sock := startAgent(t, f)
	code, out, _ := runAt(t, sock, "", "status", "--json")
	var got api.Status
	if code != exitOK || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("code %d, out %s", code, out)
	}
	want, _ := f.Status(context.Background())
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("status --json differs from the backend (-want +got):\n%s", diff)
	}
}

func TestImportsAndCredentialsListings(t *testing.T) {
	sock := startAgent(t, fakeAgent())
	code, out, _ := runAt(t, sock, "", "imports")
	if code != exitOK || !strings.Contains(out, "i9") || !strings.Contains(out, "pending-unlock") || !strings.Contains(out, "STATE") {
		t.Fatalf("imports: %d\n%s", code, out)
	}
	code, out, _ = runAt(t, sock, "", "imports", "i9")
	if code != exitOK || !strings.Contains(out, "Name       Acme 2027") {
		t.Fatalf("imports i9: %d\n%s", code, out)
	}
	code, _, errOut := runAt(t, sock, "", "imports", "nope")
	if code != exitFailure || !strings.Contains(errOut, "not found") {
		t.Fatalf("imports nope: %d %s", code, errOut)
	}
	code, out, _ = runAt(t, sock, "", "imports", "--json")
	var imps struct{ Imports []store.Import }
	if code != exitOK || json.Unmarshal([]byte(out), &imps) != nil || len(imps.Imports) != 1 || imps.Imports[0].ID != "i9" {
		t.Fatalf("imports --json: %d %s", code, out)
	}
	code, out, _ = runAt(t, sock, "", "credentials")
	if code != exitOK || !strings.Contains(out, "Acme 2025") || !strings.Contains(out, "previous") || !strings.Contains(out, "k-2026") {
		t.Fatalf("credentials: %d\n%s", code, out)
	}
	code, out, _ = runAt(t, sock, "", "credentials", "--json")
	var creds struct{ Credentials []store.Credential }
	if code != exitOK || json.Unmarshal([]byte(out), &creds) != nil || len(creds.Credentials) != 2 {
		t.Fatalf("credentials --json: %d %s", code, out)
	}
	if code, _, _ := runAt(t, sock, "", "credentials", "extra"); code != exitUsage {
		t.Fatalf("credentials extra: %d, want usage", code)
	}
}

// TestStatusNamesTheNextStepOfEachPendingImport: a failed import is retried
// or dismissed, not unlocked; a failed manual one is run again.
func TestStatusNamesTheNextStepOfEachPendingImport(t *testing.T) {
	f := fakeAgent()
	plist := "/Library/Managed Preferences/com.github.rekeyd.rekey.plist"
	pending := []store.Import{
		{ID: "locked-import", Name: "Locked", Source: plist, State: store.ImportPendingUnlock},
		{ID: "no-target-import", Name: "No target", Source: plist, State: store.ImportNeedsTarget},
		{ID: "failed-payload", Name: "Late key", Source: plist, State: store.ImportFailed, Reason: "rejected"},
		{ID: "manual-0123456789abcdef", Name: "Typo", Source: agent.ManualSource, Intent: "update", State: store.ImportFailed, Reason: "rejected"},
		{ID: "manual-fedcba9876543210", Name: "Typo", Source: agent.ManualSource, Intent: "add", State: store.ImportFailed, Reason: "rejected"},
		{ID: "busy-import", Name: "Busy", Source: plist, State: store.ImportApplying},
	}
	status := f.StatusFunc
	f.StatusFunc = func(ctx context.Context) (api.Status, error) {
		st, err := status(ctx)
		st.PendingImports = pending
		return st, err
	}
	code, out, errOut := runAt(t, startAgent(t, f), "", "status")
	if code != exitOK {
		t.Fatalf("status: exit %d, %s", code, errOut)
	}
	lines := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		for _, imp := range pending {
			if strings.Contains(line, shortID(imp.ID)) {
				lines[imp.ID] = line
			}
		}
	}
	for id, want := range map[string]string{
		"locked-import":           "→ rekey unlock locked-import",
		"no-target-import":        "→ rekey unlock no-target-import --update CREDENTIAL (or --add)",
		"failed-payload":          "→ rekey retry failed-payload once the cause is fixed, or rekey dismiss failed-payload",
		"manual-0123456789abcdef": "→ run 'rekey rotate' again with the corrected credential; 'rekey dismiss manual-01234' clears this",
		"manual-fedcba9876543210": "→ run 'rekey add' again with the corrected credential; 'rekey dismiss manual-fedcb' clears this",
	} {
		if !strings.HasSuffix(lines[id], want) {
			t.Errorf("status line of %s is %q, want it to end with %q", id, lines[id], want)
		}
	}
	if strings.Contains(lines["busy-import"], "→") || strings.Contains(lines["manual-0123456789abcdef"], "unlock") {
		t.Errorf("a hint where none applies:\n%s", out)
	}
}
