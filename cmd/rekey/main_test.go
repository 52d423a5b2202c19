package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/agent/api"
)

// runCLI runs the CLI in process and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := &Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}
	code := Run(context.Background(), env, args)
	return code, out.String(), errOut.String()
}

func TestVersionPrintsVersion(t *testing.T) {
	code, out, _ := runCLI(t, "", "version")
	if code != exitOK || !strings.Contains(out, version) {
		t.Fatalf("version: code %d, out %q", code, out)
	}
	code, out, _ = runCLI(t, "", "version", "--json")
	var v map[string]string
	if code != exitOK || json.Unmarshal([]byte(out), &v) != nil || v["version"] != version {
		t.Fatalf("version --json: code %d, out %q", code, out)
	}
}

func TestUnknownCommandIsUsageError(t *testing.T) {
	code, _, errOut := runCLI(t, "", "frobnicate")
	if code != exitUsage || !strings.Contains(errOut, "unknown command") {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
}

func TestBadFlagIsUsageError(t *testing.T) {
	code, _, _ := runCLI(t, "", "version", "--nope")
	if code != exitUsage {
		t.Fatalf("code %d, want %d", code, exitUsage)
	}
}

func TestHelpListsEveryCommandInTableOrder(t *testing.T) {
	code, out, _ := runCLI(t, "", "help")
	if code != exitOK {
		t.Fatalf("help: code %d", code)
	}
	var listed []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); strings.HasPrefix(line, "  ") && len(f) > 1 {
			listed = append(listed, f[0])
			if _, ok := lookup(f[0]); !ok {
				t.Errorf("help lists %q, which is not in the table", f[0])
			}
		}
	}
	var want []string
	for _, c := range commands {
		if !c.hidden {
			want = append(want, c.name)
		}
	}
	if strings.Join(listed, " ") != strings.Join(want, " ") {
		t.Fatalf("help lists\n  %v\nwant the table order\n  %v", listed, want)
	}
	if code, _, _ := runCLI(t, ""); code != exitUsage {
		t.Fatalf("no command: code %d, want %d", code, exitUsage)
	}
}

func TestEveryCommandInTheTableAnswersHelp(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range commands {
		if seen[c.name] {
			t.Errorf("%q appears twice in the table", c.name)
		}
		seen[c.name] = true
		if c.summary == "" || strings.HasSuffix(c.summary, ".") || strings.Contains(c.summary, "\n") {
			t.Errorf("%s: summary %q is not one line without a final period", c.name, c.summary)
		}
		if !strings.HasPrefix(c.example, "rekey "+c.name) && !strings.HasPrefix(c.example, "sudo rekey "+c.name) {
			t.Errorf("%s: example %q does not run the command", c.name, c.example)
		}
		code, out, errOut := runCLI(t, "", c.name, "-h")
		want := "usage: rekey " + c.name
		if c.args != "" {
			want += " " + c.args
		}
		if code != exitOK || errOut != "" || !strings.HasPrefix(out, want) || !strings.Contains(out, "example:\n  "+c.example+"\n") {
			t.Errorf("rekey %s -h: code %d, stdout %q, stderr %q; want 0 and its usage line, flags and example on stdout", c.name, code, out, errOut)
		}
		if fl := flagsOf(commandFlags(c)); len(fl) > 0 && !strings.Contains(out, "\nflags:\n  --"+fl[0].name) {
			t.Errorf("rekey %s -h does not list its flags:\n%s", c.name, out)
		}
		if code, viaHelp, _ := runCLI(t, "", "help", c.name); code != exitOK || viaHelp != out {
			t.Errorf("rekey help %s: code %d, output differs from -h:\n%s", c.name, code, viaHelp)
		}
	}
}

func TestVersionFlagAndHelpOfAnUnknownCommand(t *testing.T) {
	code, out, _ := runCLI(t, "", "--version")
	if code != exitOK || !strings.HasPrefix(out, "rekey "+version) {
		t.Fatalf("--version: code %d, out %q", code, out)
	}
	if code, _, errOut := runCLI(t, "", "help", "frobnicate"); code != exitUsage || !strings.Contains(errOut, "unknown command") {
		t.Fatalf("help frobnicate: code %d, err %q", code, errOut)
	}
}

func TestJSONErrorsAreTheAPIErrorObject(t *testing.T) {
	sock := startAgent(t, fakeAgent())
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"imports", "nope", "--json"}, exitFailure, "not_found"},
		{[]string{"rollback", "--json", "NoSuchTenant"}, exitFailure, "failed"},
		{[]string{"check", "--json", "a", "b"}, exitUsage, "usage"},
		{[]string{"status", "--json", "--bogus"}, exitUsage, "usage"},
	} {
		code, out, errOut := runAt(t, sock, "", tc.args...)
		var body api.ErrorBody
		if code != tc.code || errOut != "" || json.Unmarshal([]byte(out), &body) != nil || body.Error.Code != tc.want || body.Error.Message == "" {
			t.Errorf("rekey %v: exit %d, stdout %q, stderr %q; want exit %d and {\"error\":{\"code\":%q}} on stdout", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
}
