package packaging

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"howett.net/plist"
)

// shellScripts are every shell script shipped under packaging/.
var shellScripts = []string{
	"linux/scripts/postinstall.sh",
	"linux/scripts/preremove.sh",
	"linux/scripts/postremove.sh",
	"linux/package-check.sh",
	"macos/build-pkg.sh",
	"macos/scripts/preinstall",
	"macos/scripts/postinstall",
	"macos/uninstall.sh",
	"macos/mdm/write-passphrase.sh",
	"macos/mdm/jamf-extension-attribute.sh",
}

// documentedScripts are shown whole in the admin guide, which must not drift
// from the files that shellcheck checks.
var documentedScripts = []string{"macos/mdm/write-passphrase.sh", "macos/mdm/jamf-extension-attribute.sh"}

func TestAdminGuideShowsTheCheckedScripts(t *testing.T) {
	guide, err := os.ReadFile("../docs/admin-guide.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range documentedScripts {
		body, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(guide), "```sh\n"+string(body)+"```") {
			t.Errorf("docs/admin-guide.md does not show %s as it is; copy the file into the guide", s)
		}
	}
}

func TestShellScriptsPassShellcheck(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Fatal("shellcheck not found: apt-get install -y shellcheck (.ci/run does)")
	}
	args := append([]string{"--severity=style"}, shellScripts...)
	out, err := exec.Command(sc, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("shellcheck: %v\n%s", err, out)
	}
}

func TestShellScriptsAreExecutableAndListed(t *testing.T) {
	listed := map[string]bool{}
	for _, s := range shellScripts {
		listed[s] = true
		fi, err := os.Stat(s)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o111 != 0o111 {
			t.Errorf("%s: mode %v, want executable (installers run it directly)", s, fi.Mode().Perm())
		}
	}
	// Any script added later must be listed above, or shellcheck skips it.
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		head := make([]byte, 2)
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if n, _ := f.Read(head); n == 2 && string(head) == "#!" && !listed[p] {
			t.Errorf("%s is a script missing from shellScripts", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestEveryPlistParses(t *testing.T) {
	var n int
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(p, ".plist") || strings.HasSuffix(p, ".mobileconfig")) {
			return err
		}
		n++
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var v map[string]any
		if _, err := plist.Unmarshal(data, &v); err != nil {
			t.Errorf("%s: %v", p, err)
		} else if len(v) == 0 {
			t.Errorf("%s: empty dictionary", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 3 {
		t.Fatalf("found %d plists, want the launchd plist, the manifest and the example profile", n)
	}
}

// runScript runs a script and returns its exit code and combined output.
func runScript(t *testing.T, script string, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command("sh", append([]string{script}, args...)...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	}
	t.Fatalf("run %s: %v", script, err)
	return 0, ""
}

func TestBuildPkgFailsClearlyOffMacOS(t *testing.T) {
	if runtime.GOOS == "darwin" {
		t.Skip("on macOS build-pkg.sh builds the package for real")
	}
	code, out := runScript(t, "macos/build-pkg.sh")
	if code != 1 || !strings.Contains(out, "only on macOS") || !strings.Contains(out, "make package") {
		t.Fatalf("exit %d, output %q", code, out)
	}
}

func TestMacUninstallRejectsUnknownFlag(t *testing.T) {
	code, out := runScript(t, "macos/uninstall.sh", "--everything")
	if code != 2 || !strings.Contains(out, "usage: uninstall.sh [--purge]") {
		t.Fatalf("exit %d, output %q", code, out)
	}
}
