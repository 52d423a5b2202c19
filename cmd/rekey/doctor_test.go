package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kardianos/service"
	"github.com/rekeyd/rekey/agent/doctor"
	"github.com/rekeyd/rekey/store"
)

// doctorPaths makes a state folder with a real store and returns doctor's
// path flags for it.
func doctorPaths(t *testing.T) (dir string, args []string) {
	t.Helper()
	dir = t.TempDir()
	state := filepath.Join(dir, "state")
	s, err := store.Open(state, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	pass := filepath.Join(dir, "passphrase")
	if err := os.WriteFile(pass, []byte("doctor cli secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, []string{"--state-dir", state, "--prefs-dir", filepath.Join(dir, "managed"),
		"--passphrase-file", pass, "--socket", filepath.Join(dir, "s.sock")}
}

func TestDoctorHealthyStoppedEndpointExitsZero(t *testing.T) {
	fake, _, _ := withHooks(t, "linux", 0)
	fake.status = service.StatusStopped
	_, args := doctorPaths(t)
	code, out, errOut := runCLI(t, "", append([]string{"doctor"}, args...)...)
	if code != exitOK {
		t.Fatalf("code %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"ok    database", "warn  socket", "not running", "warn  service", "sudo rekey start"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "doctor cli secret") {
		t.Error("the report shows the passphrase")
	}
}

func TestDoctorFailureExitsOneWithJSON(t *testing.T) {
	withHooks(t, "linux", 0)
	dir, args := doctorPaths(t)
	if err := os.Chmod(filepath.Join(dir, "passphrase"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "", append([]string{"doctor", "--json"}, args...)...)
	if code != exitFailure || !strings.Contains(errOut, "at least one check failed") {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
	var r doctor.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	var found bool
	for _, f := range r.Findings {
		found = found || (f.Check == "passphrase-file" && f.Level == doctor.Fail && strings.Contains(f.Fix, "chmod 600"))
	}
	if !r.Failed || !found {
		t.Fatalf("no passphrase-file failure with a fix: %+v", r)
	}
}

func TestDoctorReportsUnknownServiceAsWarning(t *testing.T) {
	fake, _, _ := withHooks(t, "linux", 0)
	fake.platform = "unix-systemv" // no systemd here
	_, args := doctorPaths(t)
	code, out, _ := runCLI(t, "", append([]string{"doctor"}, args...)...)
	if code != exitOK || !strings.Contains(out, "warn  service          unknown") {
		t.Fatalf("code %d:\n%s", code, out)
	}
	fake.platform, fake.statErr = "linux-systemd", service.ErrNotInstalled
	_, out, _ = runCLI(t, "", append([]string{"doctor"}, args...)...)
	if !strings.Contains(out, "not installed") {
		t.Fatalf("not-installed not reported:\n%s", out)
	}
	fake.statErr = errors.New("dbus gone")
	_, out, _ = runCLI(t, "", append([]string{"doctor"}, args...)...)
	if !strings.Contains(out, "unknown: dbus gone") {
		t.Fatalf("status error not reported:\n%s", out)
	}
}

func TestDoctorUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"doctor", "extra"}, {"doctor", "--stale-after", "0s"}, {"doctor", "--nope"}} {
		if code, _, _ := runCLI(t, "", args...); code != exitUsage {
			t.Errorf("%v: code %d, want %d", args, code, exitUsage)
		}
	}
}
