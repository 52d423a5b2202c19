package packaging

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestJamfExtensionAttributePrintsOneResult runs the extension attribute with
// its binary and status paths moved into a temporary folder and fake
// launchctl and defaults: each state gives one word, and the script prints
// the <result> line and nothing else.
func TestJamfExtensionAttributePrintsOneResult(t *testing.T) {
	const script = "macos/mdm/jamf-extension-attribute.sh"
	body, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	running := "0 \tstate = running"
	cases := map[string]struct {
		binary, statusFile bool
		launchctl          string
		defaults           []string // SourceOK, PendingImports
		want               string
	}{
		"not installed":          {false, false, running, nil, "not-installed"},
		"installed, not loaded":  {true, true, "113 Could not find service", nil, "not-running"},
		"loaded, not running":    {true, true, "0 \tstate = not running", nil, "not-running"},
		"running, no status yet": {true, false, running, nil, "no-status"},
		"payload refused":        {true, true, running, []string{"0 0"}, "source-error"},
		"imports waiting":        {true, true, running, []string{"0 1", "0 2"}, "pending-imports"},
		"all well":               {true, true, running, []string{"0 1", "0 0"}, "ok"},
		"all well, keys absent":  {true, true, running, []string{"1", "1"}, "ok"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			exe := filepath.Join(dir, "rekey")
			status := filepath.Join(dir, "status")
			if c.binary {
				if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if c.statusFile {
				if err := os.WriteFile(status+".plist", []byte("<plist/>"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			moved := strings.NewReplacer("/usr/local/rekey/bin/rekey", exe,
				"/Library/Application Support/rekey/status", status).Replace(string(body))
			if moved == string(body) {
				t.Fatal("the script's paths changed; update this test")
			}
			copyPath := filepath.Join(dir, "ea.sh")
			if err := os.WriteFile(copyPath, []byte(moved), 0o755); err != nil {
				t.Fatal(err)
			}
			f := newFakeBin(t, "launchctl", "defaults")
			f.plan(t, "launchctl", c.launchctl)
			f.plan(t, "defaults", append(c.defaults, "")...)
			code, out := f.run(t, nil, copyPath)
			if code != 0 || out != "<result>"+c.want+"</result>\n" {
				t.Fatalf("exit %d, output %q; want only <result>%s</result>", code, out, c.want)
			}
		})
	}
}
