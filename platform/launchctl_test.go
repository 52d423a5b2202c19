package platform

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeLaunchctl answers launchctl commands from a script: each verb maps to
// the exit codes of its successive calls (0 once the list runs out).
type fakeLaunchctl struct {
	codes  map[string][]int
	output map[string]string
	calls  []string
	sleeps int
}

func (f *fakeLaunchctl) run(args ...string) ([]byte, int, error) {
	f.calls = append(f.calls, strings.Join(args, " "))
	verb := args[0]
	code := 0
	if c := f.codes[verb]; len(c) > 0 {
		code, f.codes[verb] = c[0], c[1:]
	}
	return []byte(f.output[verb]), code, nil
}

// newFakeLaunchctl returns a Launchctl for a daemon whose plist exists (or
// not), driven by f.
func newFakeLaunchctl(t *testing.T, f *fakeLaunchctl, installed bool) Launchctl {
	t.Helper()
	plist := filepath.Join(t.TempDir(), LaunchdLabel+".plist")
	if installed {
		if err := os.WriteFile(plist, []byte("<plist/>"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Launchctl{Label: LaunchdLabel, Plist: plist, Run: f.run, Tries: 3, Sleep: func(time.Duration) { f.sleeps++ }}
}

const printRunning = "system/com.github.rekeyd.rekey = {\n\tactive count = 1\n\tpath = /Library/LaunchDaemons/com.github.rekeyd.rekey.plist\n\tstate = running\n\tprogram = /usr/local/rekey/bin/rekey\n}\n"

func TestLaunchctlStatus(t *testing.T) {
	cases := map[string]struct {
		printCode int
		output    string
		installed bool
		want      LaunchdState
	}{
		"running":                 {0, printRunning, true, LaunchdRunning},
		"loaded, not running":     {0, strings.Replace(printRunning, "state = running", "state = not running", 1), true, LaunchdStopped},
		"plist there, not loaded": {113, "Could not find service", true, LaunchdUnloaded},
		"not installed":           {113, "Could not find service", false, LaunchdNotInstalled},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f := &fakeLaunchctl{codes: map[string][]int{"print": {c.printCode}}, output: map[string]string{"print": c.output}}
			got, err := newFakeLaunchctl(t, f, c.installed).Status()
			if err != nil || got != c.want {
				t.Fatalf("state %v, err %v; want %v", got, err, c.want)
			}
			if diff := cmp.Diff([]string{"print system/" + LaunchdLabel}, f.calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLaunchctlStartAndStop(t *testing.T) {
	sys := "system/" + LaunchdLabel
	cases := map[string]struct {
		op        func(Launchctl) error
		codes     map[string][]int
		installed bool
		want      []string // calls; "PLIST" stands for the plist path
		sleeps    int
		errSays   []string
	}{
		"start unloaded daemon": {
			op: Launchctl.Start, codes: map[string][]int{"print": {113}}, installed: true,
			want: []string{"print " + sys, "enable " + sys, "bootstrap system PLIST", "kickstart " + sys},
		},
		"start retries bootstrap while the old instance leaves": {
			op: Launchctl.Start, codes: map[string][]int{"print": {113}, "bootstrap": {5, 37}}, installed: true,
			want:   []string{"print " + sys, "enable " + sys, "bootstrap system PLIST", "bootstrap system PLIST", "bootstrap system PLIST", "kickstart " + sys},
			sleeps: 2,
		},
		"start gives up and names Login Items": {
			op: Launchctl.Start, codes: map[string][]int{"print": {113}, "bootstrap": {5, 5, 5}}, installed: true,
			want:    []string{"print " + sys, "enable " + sys, "bootstrap system PLIST", "bootstrap system PLIST", "bootstrap system PLIST"},
			sleeps:  2,
			errSays: []string{"launchctl bootstrap system", "exit 5", "tried 3 times", "Login Items", "rekey-service-management.mobileconfig"},
		},
		"start loaded daemon only kickstarts": {
			op: Launchctl.Start, installed: true,
			want: []string{"print " + sys, "kickstart " + sys},
		},
		"start without plist": {
			op: Launchctl.Start, codes: map[string][]int{"print": {113}}, installed: false,
			want:    []string{"print " + sys},
			errSays: []string{"not installed"},
		},
		"stop loaded daemon": {
			op: Launchctl.Stop, installed: true,
			want: []string{"print " + sys, "bootout " + sys},
		},
		"stop unloaded daemon does nothing": {
			op: Launchctl.Stop, codes: map[string][]int{"print": {113}}, installed: true,
			want: []string{"print " + sys},
		},
		"stop reports bootout failure": {
			op: Launchctl.Stop, codes: map[string][]int{"bootout": {1}}, installed: true,
			want:    []string{"print " + sys, "bootout " + sys},
			errSays: []string{"launchctl bootout " + sys, "exit 1"},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f := &fakeLaunchctl{codes: c.codes, output: map[string]string{"print": printRunning}}
			if f.codes == nil {
				f.codes = map[string][]int{}
			}
			l := newFakeLaunchctl(t, f, c.installed)
			err := c.op(l)
			for i, w := range c.want {
				c.want[i] = strings.ReplaceAll(w, "PLIST", l.Plist)
			}
			if diff := cmp.Diff(c.want, f.calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			if f.sleeps != c.sleeps {
				t.Errorf("slept %d times, want %d", f.sleeps, c.sleeps)
			}
			if len(c.errSays) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrLaunchctl) {
				t.Fatalf("err %v, want ErrLaunchctl", err)
			}
			for _, s := range c.errSays {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error lacks %q: %v", s, err)
				}
			}
		})
	}
}
