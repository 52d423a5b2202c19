package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kardianos/service"
	"github.com/rekeyd/rekey/platform"
)

// launchdFixture is a launchdManager over a recording launchctl that keeps
// track of whether the daemon is loaded, and a plist in a temporary folder.
func launchdFixture(t *testing.T, loaded bool) (launchdManager, *[]string) {
	t.Helper()
	plist := filepath.Join(t.TempDir(), platform.LaunchdLabel+".plist")
	if err := os.WriteFile(plist, []byte("<plist/>"), 0o644); err != nil {
		t.Fatal(err)
	}
	var calls []string
	run := func(args ...string) ([]byte, int, error) {
		calls = append(calls, strings.Join(args, " "))
		switch args[0] {
		case "print":
			if !loaded {
				return []byte("Could not find service"), 113, nil
			}
			return []byte("state = running\n"), 0, nil
		case "bootstrap":
			loaded = true
		case "bootout":
			loaded = false
		}
		return nil, 0, nil
	}
	ctl := platform.Launchctl{Label: platform.LaunchdLabel, Plist: plist, Run: run, Tries: 1, Sleep: func(time.Duration) {}}
	return launchdManager{serviceManager: &fakeManager{platform: "darwin-launchd"}, ctl: ctl}, &calls
}

func TestLaunchdManagerSpeaksModernLaunchctl(t *testing.T) {
	sys := "system/" + platform.LaunchdLabel
	m, calls := launchdFixture(t, false)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	want := []string{"print " + sys, "enable " + sys, "bootstrap system " + m.ctl.Plist, "kickstart " + sys}
	if diff := cmp.Diff(want, *calls); diff != "" {
		t.Errorf("start (-want +got):\n%s", diff)
	}

	m, calls = launchdFixture(t, true)
	if s, err := m.Status(); err != nil || s != service.StatusRunning {
		t.Fatalf("status %v, err %v; want running", s, err)
	}
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	if s, err := m.Status(); err != nil || s != service.StatusStopped {
		t.Errorf("status after stop, plist kept: %v, err %v; want stopped", s, err)
	}
	if err := m.Uninstall(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(m.ctl.Plist); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("plist still there after uninstall: %v", err)
	}
	if _, err := m.Status(); !errors.Is(err, service.ErrNotInstalled) {
		t.Errorf("status after uninstall: %v, want ErrNotInstalled", err)
	}
	want = []string{"print " + sys, "print " + sys, "bootout " + sys, "print " + sys, "print " + sys, "print " + sys}
	if diff := cmp.Diff(want, *calls); diff != "" {
		t.Errorf("status, stop, uninstall (-want +got):\n%s", diff)
	}
}
