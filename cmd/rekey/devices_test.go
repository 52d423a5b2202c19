package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// TestDevicesCSVReadsBackInPython lists a synced tenant as CSV and reads
// it with Python's csv module, as a spreadsheet or a script would.
func TestDevicesCSVReadsBackInPython(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is needed to read the CSV back: install it (apt-get install python3)")
	}
	l := startLiveAgent(t, map[string]string{payload.KeyAuthCheck: payload.AuthOff})
	a := l.key("", true)
	e := l.entry("dev-add", "Acme, Inc.", payload.IntentAdd, a, livePassphrase)
	l.push(e)
	l.waitImport(e.ImportID, store.ImportApplied)
	if ev := l.waitSync(); ev.Kind != store.EvSyncFinished {
		t.Fatalf("first sync: %+v", ev)
	}
	// Device 7 leaves the organisation; the next pass marks it released.
	l.apple.Release(7)
	if code, out, errOut := runAt(t, l.socket, "", "sync", "Acme, Inc."); code != exitOK {
		t.Fatalf("sync: exit %d %q %q", code, out, errOut)
	}

	code, out, errOut := runAt(t, l.socket, "", "devices", "Acme, Inc.", "--csv")
	if code != exitOK {
		t.Fatalf("devices --csv: exit %d: %s", code, errOut)
	}
	cmd := exec.Command(python, "-c", `import csv, json, sys
print(json.dumps(list(csv.DictReader(sys.stdin))))`)
	cmd.Stdin = strings.NewReader(out)
	js, err := cmd.Output()
	if err != nil {
		t.Fatalf("python could not read the CSV: %v\n%s", err, out)
	}
	var rows []map[string]string
	if err := json.Unmarshal(js, &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 25 {
		t.Fatalf("%d rows, want 25:\n%s", len(rows), out)
	}
	for i, r := range rows {
		if r["serial"] != appletest.DeviceID(i) {
			t.Fatalf("row %d is %q, want %s", i, r["serial"], appletest.DeviceID(i))
		}
		want := appletest.CoverageState(i)
		if i == 7 {
			want = "active" // kept as last read, and marked released
			if r["released_at"] == "" {
				t.Errorf("device 7 left the organisation: released_at empty")
			}
		} else if r["released_at"] != "" {
			t.Errorf("device %d released at %q", i, r["released_at"])
		}
		if r["coverage_state"] != want || r["coverage_checked_at"] == "" {
			t.Errorf("device %d: %v, want coverage state %s", i, r, want)
		}
		if (want != "none" && i%4 != 3) != (r["coverage_end"] != "") {
			t.Errorf("device %d: coverage_end %q (an open-ended subscription has none)", i, r["coverage_end"])
		}
	}

	code, out, _ = runAt(t, l.socket, "", "devices", "Acme, Inc.", "--coverage", "none", "--json")
	var page api.DevicePage
	if code != exitOK || json.Unmarshal([]byte(out), &page) != nil || len(page.Devices) != 7 {
		t.Fatalf("devices --coverage none --json: exit %d, %d devices\n%s", code, len(page.Devices), out)
	}
	code, out, _ = runAt(t, l.socket, "", "devices", "Acme, Inc.")
	if code != exitOK || !strings.HasPrefix(out, "SERIAL") || !strings.Contains(out, "open-ended") ||
		strings.Count(out, "\n") != 26 {
		t.Fatalf("devices table: exit %d\n%s", code, out)
	}
	code, out, _ = runAt(t, l.socket, "", "devices", "Acme, Inc.", "--expiring", "3650d", "--released", "exclude", "--csv")
	if code != exitOK || strings.Count(out, "\n") < 2 || strings.Contains(out, appletest.DeviceID(7)) {
		t.Fatalf("devices --expiring: exit %d\n%s", code, out)
	}
	for _, bad := range [][]string{{"--json", "--csv"}, {"--coverage", "covered"}, {"--expiring", "soon"}, {"--released", "maybe"}} {
		// With --json the error is JSON on stdout; otherwise text on stderr.
		if code, out, errOut := runAt(t, l.socket, "", append([]string{"devices", "Acme, Inc."}, bad...)...); code != exitUsage || out+errOut == "" {
			t.Errorf("devices %v: exit %d %q %q, want a usage error", bad, code, out, errOut)
		}
	}
	l.healthy()
}
