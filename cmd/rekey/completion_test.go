package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// bashComplete sources the bash script and completes words (the last one
// being typed), returning the candidates.
func bashComplete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = "'" + w + "'"
	}
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c", `source "$1"; COMP_WORDS=(`+strings.Join(quoted, " ")+`); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _rekey; printf '%s\n' "${COMPREPLY[@]}"`, "bash", script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash completion of %v: %v\n%s", words, err, out)
	}
	return strings.Fields(string(out))
}

func TestBashCompletionCompletesCommandsFlagsAndValues(t *testing.T) {
	code, out, _ := runCLI(t, "", "completion", "bash")
	if code != exitOK {
		t.Fatalf("completion bash: exit %d", code)
	}
	script := filepath.Join(t.TempDir(), "rekey.bash")
	if err := os.WriteFile(script, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{"rekey", "rot"}, "rotate"},
		{[]string{"rekey", "rotate", "Acme", "--key-"}, "--key-id"},
		{[]string{"rekey", "add", "--auth-check", "be"}, "best-effort"},
		{[]string{"rekey", "help", "chec"}, "check"},
		{[]string{"rekey", "completion", "fi"}, "fish"},
	} {
		got := bashComplete(t, script, tc.words...)
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("completing %v: %v, want [%s]", tc.words, got, tc.want)
		}
	}
	if got := bashComplete(t, script, "rekey", "m"); len(got) != 0 {
		t.Errorf("completing the hidden man command: %v, want nothing", got)
	}
}

func TestZshAndFishCompletionNameEveryCommandAndFlag(t *testing.T) {
	for _, shell := range []string{"zsh", "fish"} {
		code, out, _ := runCLI(t, "", "completion", shell)
		if code != exitOK {
			t.Fatalf("completion %s: exit %d", shell, code)
		}
		for _, c := range shownCommands() {
			if !strings.Contains(out, c.name) {
				t.Errorf("%s completion lacks the command %s", shell, c.name)
			}
			for _, f := range flagsOf(commandFlags(c)) {
				if !strings.Contains(out, f.name) {
					t.Errorf("%s completion lacks %s --%s", shell, c.name, f.name)
				}
			}
		}
		path, err := exec.LookPath(shell)
		if err != nil {
			t.Fatalf("%s is needed to check its completion script; `make tools` installs it", shell)
		}
		script := filepath.Join(t.TempDir(), "rekey."+shell)
		if err := os.WriteFile(script, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		if msg, err := exec.Command(path, "-n", script).CombinedOutput(); err != nil {
			t.Errorf("%s -n rejects the script: %v\n%s", shell, err, msg)
		}
	}
	if code, _, _ := runCLI(t, "", "completion", "tcsh"); code != exitUsage {
		t.Errorf("completion tcsh: exit %d, want %d", code, exitUsage)
	}
}

func TestManPageDescribesEveryCommandFromTheTable(t *testing.T) {
	code, page, _ := runCLI(t, "", "man")
	if code != exitOK || !strings.HasPrefix(page, ".TH REKEY 1") {
		t.Fatalf("man: exit %d\n%s", code, page)
	}
	for _, c := range shownCommands() {
		if !strings.Contains(page, ".SS \""+roff(c.usageLine(commandFlags(c)))+"\"") || !strings.Contains(page, roff(c.example)) {
			t.Errorf("the man page lacks %s's usage line or example", c.name)
		}
	}
	if !strings.Contains(page, ".BI \"\\-\\-key \" \"FILE\"\n") || strings.Contains(page, "\" FILE\"") {
		t.Errorf("a flag's value is not set in italics after the bold flag (.BI \"\\-\\-key \" \"FILE\")")
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Fatal("groff is needed to check the man page; `make tools` installs it")
	}
	cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z")
	cmd.Stdin = strings.NewReader(page)
	if msg, err := cmd.CombinedOutput(); err != nil || len(msg) > 0 {
		t.Errorf("groff warns about the man page: %v\n%s", err, msg)
	}
}
