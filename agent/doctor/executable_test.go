package doctor_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/agent/doctor"
)

// binaryTree makes top/opt/rekey/bin/rekey (folders 0755, binary 0755) under
// a temporary top and returns top and the binary's path.
func binaryTree(t *testing.T) (top, exe string) {
	t.Helper()
	top = t.TempDir()
	bin := filepath.Join(top, "opt", "rekey", "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	exe = filepath.Join(bin, "rekey")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return top, exe
}

func TestExecutableCheck(t *testing.T) {
	me := []int{os.Getuid()}
	cases := map[string]struct {
		prepare func(t *testing.T, top, exe string) (run string)
		owners  []int
		level   doctor.Level
		says    []string
	}{
		"tree owned by an allowed owner is sound": {
			prepare: func(t *testing.T, top, exe string) string { return exe },
			level:   doctor.OK, says: []string{"every folder above it"},
		},
		"run through a link, the real path is checked": {
			prepare: func(t *testing.T, top, exe string) string {
				link := filepath.Join(top, "rekey-link")
				if err := os.Symlink(exe, link); err != nil {
					t.Fatal(err)
				}
				return link
			},
			level: doctor.OK, says: []string{"rekey-link leads to it"},
		},
		"group-writable folder above the binary": {
			prepare: func(t *testing.T, top, exe string) string {
				chmod(t, filepath.Join(top, "opt"), 0o775)
				return exe
			},
			level: doctor.Fail, says: []string{"opt has mode 0775", "chmod go-w", "/usr/local/rekey/bin"},
		},
		"other-writable binary": {
			prepare: func(t *testing.T, top, exe string) string {
				chmod(t, exe, 0o757)
				return exe
			},
			level: doctor.Fail, says: []string{"rekey has mode 0757", "chmod go-w"},
		},
		"the top folder itself is checked": {
			prepare: func(t *testing.T, top, exe string) string {
				chmod(t, top, 0o777)
				return exe
			},
			level: doctor.Fail, says: []string{"has mode 0777"},
		},
		"owned by someone not allowed": {
			prepare: func(t *testing.T, top, exe string) string { return exe },
			owners:  []int{os.Getuid() + 4242},
			level:   doctor.Fail, says: []string{"is owned by uid", "chown root"},
		},
		"binary gone since the process started": {
			prepare: func(t *testing.T, top, exe string) string {
				if err := os.Remove(exe); err != nil {
					t.Fatal(err)
				}
				return exe
			},
			level: doctor.Warn, says: []string{"no longer exists", "restart the service"},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			top, exe := binaryTree(t)
			run := c.prepare(t, top, exe)
			owners := c.owners
			if owners == nil {
				owners = me
			}
			f := doctor.Executable(run, top, owners)
			text := f.Message + " fix: " + f.Fix
			if f.Check != "executable" || f.Level != c.level {
				t.Fatalf("finding %+v, want level %s", f, c.level)
			}
			for _, s := range c.says {
				if !strings.Contains(text, s) {
					t.Errorf("finding lacks %q: %s", s, text)
				}
			}
		})
	}
}

func TestRunChecksTheExecutableWhenGiven(t *testing.T) {
	top, exe := binaryTree(t)
	chmod(t, filepath.Dir(exe), 0o777)
	e := newEndpoint(t)
	cfg := e.config()
	cfg.Executable, cfg.ExecutableTop = exe, top
	r := doctor.Run(t.Context(), cfg)
	if !r.Failed || r.Findings[0].Check != "executable" || r.Findings[0].Level != doctor.Fail {
		t.Fatalf("report %+v: want the executable check first, failed", r.Findings)
	}
}

func chmod(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}
