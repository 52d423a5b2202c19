package packaging

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeBin is a folder of recording stand-ins for the tools a shell script
// calls (launchctl, pkgbuild, codesign, rm ...), put first on the script's
// PATH. Each fake appends "name args..." to a shared log and answers its Nth
// call from line N of its plan — "<exit code>[ <stdout>]" — or, past the
// plan, from its default (exit 0, no output, unless set).
type fakeBin struct {
	dir string
}

// fakeCreates are shell snippets that make a fake write the file a real
// tool would (run only when the fake exits 0), so that later steps find it.
var fakeCreates = map[string]string{
	"go":           `prev=; for a; do [ "$prev" = -o ] && : >"$a"; prev=$a; done`,
	"lipo":         `prev=; for a; do [ "$prev" = -output ] && : >"$a"; prev=$a; done`,
	"pkgbuild":     `for a; do last=$a; done; : >"$last"`,
	"productbuild": `for a; do last=$a; done; : >"$last"`,
	"productsign":  `for a; do last=$a; done; : >"$last"`,
}

const fakeScript = `#!/bin/sh
d='@DIR@'
printf '%s\n' "@NAME@ $*" >>"$d/calls"
n=$(($(cat "$d/@NAME@.count" 2>/dev/null || echo 0) + 1))
echo "$n" >"$d/@NAME@.count"
line=$(sed -n "${n}p" "$d/@NAME@.plan" 2>/dev/null)
[ -n "$line" ] || line=$(cat "$d/@NAME@.default" 2>/dev/null)
[ -n "$line" ] || line=0
code=${line%% *}
[ "$code" = "$line" ] || printf '%s\n' "${line#* }"
if [ "$code" = 0 ]; then
	@CREATES@
fi
exit "$code"
`

func newFakeBin(t *testing.T, names ...string) *fakeBin {
	t.Helper()
	f := &fakeBin{dir: t.TempDir()}
	for _, n := range names {
		creates := fakeCreates[n]
		if creates == "" {
			creates = ":"
		}
		body := strings.NewReplacer("@DIR@", f.dir, "@NAME@", n, "@CREATES@", creates).Replace(fakeScript)
		if err := os.WriteFile(filepath.Join(f.dir, n), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// plan sets the answers of name's successive calls.
func (f *fakeBin) plan(t *testing.T, name string, answers ...string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, name+".plan"), []byte(strings.Join(answers, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// always sets name's answer to every call past its plan.
func (f *fakeBin) always(t *testing.T, name, answer string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, name+".default"), []byte(answer+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// calls returns the recorded calls, "name args...", of the given tools (all
// when none is given), in order.
func (f *fakeBin) calls(t *testing.T, only ...string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(f.dir, "calls"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		name, _, _ := strings.Cut(c, " ")
		if len(only) == 0 || contains(only, name) {
			out = append(out, c)
		}
	}
	return out
}

// run runs script with sh, the fakes first on PATH and env added, and
// returns its exit code and combined output.
func (f *fakeBin) run(t *testing.T, env []string, script string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command("sh", append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+f.dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
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

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
