package packaging

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rekeyd/rekey/platform"
)

const sysLabel = "system/" + platform.LaunchdLabel

var daemonPlist = "/Library/LaunchDaemons/" + platform.LaunchdLabel + ".plist"

// macInstallTools are faked for the pkg scripts, so that they touch nothing
// on the machine running the tests.
var macInstallTools = []string{"launchctl", "sleep", "mkdir", "chown", "chmod", "id", "rm", "pkgutil", "readlink"}

func TestPostinstallStartsTheDaemonWithModernLaunchctl(t *testing.T) {
	f := newFakeBin(t, macInstallTools...)
	// The installer's arguments: package path, install location, target volume.
	code, out := f.run(t, nil, "macos/scripts/postinstall", "/tmp/rekey.pkg", "/", "/")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	want := []string{
		"launchctl enable " + sysLabel,
		"launchctl bootout " + sysLabel,
		"launchctl bootstrap system " + daemonPlist,
		"launchctl kickstart -k " + sysLabel,
	}
	if diff := cmp.Diff(want, f.calls(t, "launchctl", "sleep")); diff != "" {
		t.Errorf("launchctl calls (-want +got):\n%s", diff)
	}
	for _, w := range []string{"chown root:wheel /usr/local/rekey/bin/rekey /usr/local/rekey/bin /usr/local/rekey", "chmod 0700 /Library/Application Support/rekey"} {
		if !contains(f.calls(t), w) {
			t.Errorf("no %q in %q", w, f.calls(t))
		}
	}
}

func TestPostinstallRetriesBootstrapUntilTheOldDaemonLeft(t *testing.T) {
	f := newFakeBin(t, macInstallTools...)
	// enable, bootout, then three refused bootstraps, then success.
	busy := "5 Bootstrap failed: 5: Input/output error"
	f.plan(t, "launchctl", "0", "0", busy, busy, busy)
	code, out := f.run(t, nil, "macos/scripts/postinstall", "/tmp/rekey.pkg", "/", "/")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	boot := "launchctl bootstrap system " + daemonPlist
	want := []string{"launchctl enable " + sysLabel, "launchctl bootout " + sysLabel,
		boot, "sleep 1", boot, "sleep 1", boot, "sleep 1", boot, "launchctl kickstart -k " + sysLabel}
	if diff := cmp.Diff(want, f.calls(t, "launchctl", "sleep")); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestPostinstallFailsAfterThirtyBootstrapsAndNamesLoginItems(t *testing.T) {
	f := newFakeBin(t, macInstallTools...)
	f.plan(t, "launchctl", "0", "0")
	f.always(t, "launchctl", "5 Bootstrap failed: 5: Input/output error")
	code, out := f.run(t, nil, "macos/scripts/postinstall", "/tmp/rekey.pkg", "/", "/")
	if code != 1 || !strings.Contains(out, "failed 30 times") || !strings.Contains(out, "Login Items") {
		t.Fatalf("exit %d, output %q", code, out)
	}
	calls := strings.Join(f.calls(t, "launchctl", "sleep"), "\n")
	if n := strings.Count(calls, "bootstrap system"); n != 30 {
		t.Errorf("%d bootstraps, want 30", n)
	}
	if n := strings.Count(calls, "sleep 1"); n != 29 {
		t.Errorf("%d sleeps, want 29", n)
	}
	if strings.Contains(calls, "kickstart") {
		t.Error("kickstarted a daemon that was never bootstrapped")
	}
}

func TestPostinstallOnAnotherVolumeLeavesLaunchdAlone(t *testing.T) {
	f := newFakeBin(t, macInstallTools...)
	code, out := f.run(t, nil, "macos/scripts/postinstall", "/tmp/rekey.pkg", "/Volumes/Other", "/Volumes/Other")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	if got := f.calls(t, "launchctl"); len(got) != 0 {
		t.Errorf("launchctl called for another volume: %q", got)
	}
	if !contains(f.calls(t), "mkdir -p /Volumes/Other/Library/Application Support/rekey") {
		t.Errorf("state folder not made on the target volume: %q", f.calls(t))
	}
}

func TestPreinstallStopsARunningDaemon(t *testing.T) {
	for name, c := range map[string]struct {
		printCode string
		want      []string
	}{
		"loaded":     {"0", []string{"launchctl print " + sysLabel, "launchctl bootout " + sysLabel}},
		"not loaded": {"113", []string{"launchctl print " + sysLabel}},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeBin(t, macInstallTools...)
			f.plan(t, "launchctl", c.printCode)
			if code, out := f.run(t, nil, "macos/scripts/preinstall", "/tmp/rekey.pkg", "/", "/"); code != 0 {
				t.Fatalf("exit %d: %s", code, out)
			}
			if diff := cmp.Diff(c.want, f.calls(t, "launchctl")); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUninstallTakesJamfPositionalArguments(t *testing.T) {
	state := "rm -rf /Library/Application Support/rekey /Library/Logs/rekey"
	cases := map[string]struct {
		args  []string
		code  int
		purge bool
		says  string
	}{
		"by hand":                          {nil, 0, false, "state kept"},
		"by hand, purge":                   {[]string{"--purge"}, 0, true, "with its state folder"},
		"Jamf, no parameters":              {[]string{"/", "Mac-042", "admin"}, 0, false, "state kept"},
		"Jamf, empty parameters":           {[]string{"/", "Mac-042", "admin", "", "", ""}, 0, false, "state kept"},
		"Jamf, purge as parameter 4":       {[]string{"/", "Mac-042", "admin", "--purge", "", ""}, 0, true, "with its state folder"},
		"Jamf, run with no user logged in": {[]string{"/", "Mac-042", ""}, 0, false, "state kept"},
		"Jamf, unknown parameter 4":        {[]string{"/", "Mac-042", "admin", "--everything"}, 2, false, "parameter 4"},
		"by hand, unknown flag":            {[]string{"--everything"}, 2, false, "usage: uninstall.sh [--purge]"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFakeBin(t, macInstallTools...)
			f.always(t, "id", "0 0")
			code, out := f.run(t, nil, "macos/uninstall.sh", c.args...)
			if code != c.code || !strings.Contains(out, c.says) {
				t.Fatalf("exit %d, output %q; want exit %d saying %q", code, out, c.code, c.says)
			}
			calls := f.calls(t)
			if c.code != 0 {
				if len(f.calls(t, "launchctl", "rm")) != 0 {
					t.Errorf("acted despite the usage error: %q", calls)
				}
				return
			}
			for _, w := range []string{"launchctl bootout " + sysLabel, "rm -rf /usr/local/rekey",
				"rm -f " + daemonPlist + " /var/run/rekey.sock /etc/newsyslog.d/" + platform.LaunchdLabel + ".conf"} {
				if !contains(calls, w) {
					t.Errorf("no %q in %q", w, calls)
				}
			}
			if contains(calls, state) != c.purge {
				t.Errorf("purge %v, calls %q", c.purge, calls)
			}
		})
	}
}

func TestUninstallNeedsRoot(t *testing.T) {
	f := newFakeBin(t, macInstallTools...)
	f.always(t, "id", "0 501")
	code, out := f.run(t, nil, "macos/uninstall.sh", "/", "Mac-042", "admin", "--purge")
	if code != 1 || !strings.Contains(out, "needs root") || len(f.calls(t, "launchctl", "rm")) != 0 {
		t.Fatalf("exit %d, output %q, calls %q", code, out, f.calls(t))
	}
}

// pkgBuildTools are faked for build-pkg.sh: it then runs on any system, and
// builds nothing real.
var pkgBuildTools = []string{"uname", "go", "lipo", "pkgbuild", "productbuild", "productsign", "codesign", "xcrun", "pkgutil"}

const (
	signApp       = "Developer ID Application: Example Org (ABCDE12345)"
	signInstaller = "Developer ID Installer: Example Org (ABCDE12345)"
	accepted      = `0 {"id":"2efe2717-52ef-43a5-96dc-0797e4ca1041","status":"Accepted","message":"Processing complete"}`
	invalid       = `0 {"id":"2efe2717-52ef-43a5-96dc-0797e4ca1041","status":"Invalid","message":"Processing complete"}`
)

// buildPkg runs build-pkg.sh with the fakes, output into a temporary dist
// folder, and returns exit code, output, the fakes and the package path.
func buildPkg(t *testing.T, env []string, setup func(f *fakeBin)) (int, string, *fakeBin, string) {
	t.Helper()
	f := newFakeBin(t, pkgBuildTools...)
	f.always(t, "uname", "0 Darwin")
	// codesign: sign, verify, display (which shows the hardened runtime).
	f.plan(t, "codesign", "0", "0", "0 CodeDirectory v=20500 size=1234 flags=0x10000(runtime) hashes=29+7 location=embedded")
	if setup != nil {
		setup(f)
	}
	dist := t.TempDir()
	env = append([]string{"REKEY_DIST=" + dist, "VERSION=1.2.3"}, env...)
	code, out := f.run(t, env, "macos/build-pkg.sh")
	return code, out, f, filepath.Join(dist, "rekey-1.2.3.pkg")
}

// steps keeps each call's tool and, for multi-command tools, its verb.
func steps(calls []string) []string {
	var out []string
	for _, c := range calls {
		w := strings.Fields(c)
		s := w[0]
		if len(w) > 1 && (s == "xcrun" || s == "codesign" || s == "pkgutil") {
			s += " " + w[1]
			if s == "xcrun notarytool" || s == "xcrun stapler" {
				s += " " + w[2]
			}
		}
		if s != "uname -s" && s != "uname" {
			out = append(out, s)
		}
	}
	return out
}

func TestBuildPkgUnsigned(t *testing.T) {
	code, out, f, pkg := buildPkg(t, nil, nil)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	want := []string{"go", "go", "lipo", "pkgbuild", "productbuild"}
	if diff := cmp.Diff(want, steps(f.calls(t))); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(pkg); err != nil || !strings.Contains(out, "unsigned package") {
		t.Fatalf("package %v, output %q", err, out)
	}
}

func TestBuildPkgSignsNotarisesAndVerifiesInOrder(t *testing.T) {
	env := []string{"REKEY_SIGN_APP=" + signApp, "REKEY_SIGN_INSTALLER=" + signInstaller, "REKEY_NOTARY_PROFILE=notary"}
	code, out, f, pkg := buildPkg(t, env, func(f *fakeBin) { f.plan(t, "xcrun", accepted) })
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	want := []string{"go", "go", "lipo", "codesign --force", "codesign --verify", "codesign --display",
		"pkgbuild", "productbuild", "productsign", "pkgutil --check-signature",
		"xcrun notarytool submit", "xcrun stapler staple", "pkgutil --check-signature"}
	if diff := cmp.Diff(want, steps(f.calls(t))); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	calls := strings.Join(f.calls(t), "\n")
	for _, w := range []string{"--options runtime --timestamp", "--sign " + signApp, "productsign --sign " + signInstaller + " --timestamp",
		"--keychain-profile notary --wait --output-format json"} {
		if !strings.Contains(calls, w) {
			t.Errorf("no %q in calls:\n%s", w, calls)
		}
	}
	if _, err := os.Stat(pkg); err != nil {
		t.Fatal(err)
	}
}

func TestBuildPkgRefusesHalfSignedNotarisation(t *testing.T) {
	cases := map[string]struct {
		env  []string
		says string
	}{
		"installer identity only":   {[]string{"REKEY_SIGN_INSTALLER=" + signInstaller, "REKEY_NOTARY_PROFILE=notary"}, "set REKEY_SIGN_APP"},
		"application identity only": {[]string{"REKEY_SIGN_APP=" + signApp, "REKEY_NOTARY_PROFILE=notary"}, "set REKEY_SIGN_INSTALLER"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			code, out, f, pkg := buildPkg(t, c.env, nil)
			if code != 1 || !strings.Contains(out, c.says) {
				t.Fatalf("exit %d, output %q", code, out)
			}
			if s := steps(f.calls(t)); len(s) != 0 {
				t.Errorf("built before refusing: %q", s)
			}
			if _, err := os.Stat(pkg); !os.IsNotExist(err) {
				t.Errorf("package left in dist: %v", err)
			}
		})
	}
}

func TestBuildPkgFailuresLeaveNoPackage(t *testing.T) {
	env := []string{"REKEY_SIGN_APP=" + signApp, "REKEY_SIGN_INSTALLER=" + signInstaller, "REKEY_NOTARY_PROFILE=notary"}
	cases := map[string]struct {
		setup    func(f *fakeBin)
		says     []string
		lastStep string
	}{
		"notarization invalid: the log is printed": {
			setup: func(f *fakeBin) {
				f.plan(t, "xcrun", invalid, `0 {"status":"Invalid","issues":[{"severity":"error","message":"The signature of the binary is invalid."}]}`)
			},
			says:     []string{"notarization ended 'Invalid'", "2efe2717-52ef-43a5-96dc-0797e4ca1041", "The signature of the binary is invalid."},
			lastStep: "xcrun notarytool log",
		},
		"notarytool cannot submit": {
			setup:    func(f *fakeBin) { f.plan(t, "xcrun", "69 Error: No Keychain password item found for profile: notary") },
			says:     []string{"notarytool submit failed", "No Keychain password item"},
			lastStep: "xcrun notarytool submit",
		},
		"productsign fails": {
			setup: func(f *fakeBin) {
				f.plan(t, "productsign", "1 productsign: error: Could not find appropriate signing identity")
			},
			says:     []string{"signing identity"},
			lastStep: "productsign",
		},
		"signature check fails": {
			setup:    func(f *fakeBin) { f.plan(t, "pkgutil", "1 Status: no signature") },
			says:     []string{"pkgutil --check-signature rejects the signed package"},
			lastStep: "pkgutil --check-signature",
		},
		"binary lacks the hardened runtime": {
			setup:    func(f *fakeBin) { f.plan(t, "codesign", "0", "0", "0 CodeDirectory v=20500 flags=0x0(none)") },
			says:     []string{"lacks the hardened runtime"},
			lastStep: "codesign --display",
		},
		"codesign verify fails": {
			setup:    func(f *fakeBin) { f.plan(t, "codesign", "0", "1 rekey: invalid signature") },
			says:     []string{"codesign --verify rejects"},
			lastStep: "codesign --verify",
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			code, out, f, pkg := buildPkg(t, env, c.setup)
			if code == 0 {
				t.Fatalf("exit 0: %s", out)
			}
			for _, s := range c.says {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			s := steps(f.calls(t))
			if len(s) == 0 || s[len(s)-1] != c.lastStep {
				t.Errorf("steps %q, want the last to be %q", s, c.lastStep)
			}
			if _, err := os.Stat(pkg); !os.IsNotExist(err) {
				t.Errorf("package left in dist after a failure: %v", err)
			}
		})
	}
}

// TestUninstallRetriesAFailingBootout: a failing launchctl bootout no longer
// stops the script half-way. It is tried again while the service is loaded;
// once launchctl print no longer finds it the script goes on; after 5
// failures the files are removed anyway and the exit is 1.
func TestUninstallRetriesAFailingBootout(t *testing.T) {
	printCall, bootout := "launchctl print "+sysLabel, "launchctl bootout "+sysLabel
	cases := map[string]struct {
		launchctl []string // answers of the successive launchctl calls
		code      int
		want      []string
	}{
		"fails twice, then boots out": {[]string{"0", "1", "0", "1", "0", "0"}, 0,
			[]string{printCall, bootout, printCall, bootout, printCall, bootout}},
		"fails, then the service is gone": {[]string{"0", "1", "113"}, 0,
			[]string{printCall, bootout, printCall}},
		"never boots out": {[]string{"0", "1", "0", "1", "0", "1", "0", "1", "0", "1"}, 1,
			[]string{printCall, bootout, printCall, bootout, printCall, bootout, printCall, bootout, printCall, bootout}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFakeBin(t, macInstallTools...)
			f.always(t, "id", "0 0")
			f.plan(t, "launchctl", c.launchctl...)
			code, out := f.run(t, nil, "macos/uninstall.sh")
			if code != c.code {
				t.Fatalf("exit %d, want %d: %s", code, c.code, out)
			}
			if diff := cmp.Diff(c.want, f.calls(t, "launchctl")); diff != "" {
				t.Errorf("launchctl calls (-want +got):\n%s", diff)
			}
			if !contains(f.calls(t), "rm -rf /usr/local/rekey") {
				t.Errorf("the binary was not removed: %q", f.calls(t))
			}
			if c.code != 0 && !strings.Contains(out, "bootout") {
				t.Errorf("no word of the failed bootout in %q", out)
			}
		})
	}
}
