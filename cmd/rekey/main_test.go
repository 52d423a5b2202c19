package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
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
	code, _, errOut := runCLI(t, "", "help")
	if code != exitOK {
		t.Fatalf("help: code %d", code)
	}
	var listed []string
	for _, line := range strings.Split(errOut, "\n") {
		if f := strings.Fields(line); strings.HasPrefix(line, "  ") && len(f) > 1 {
			listed = append(listed, f[0])
			if _, ok := lookup(f[0]); !ok {
				t.Errorf("help lists %q, which is not in the table", f[0])
			}
		}
	}
	var want []string
	for _, c := range commands {
		want = append(want, c.name)
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
		if code, out, errOut := runCLI(t, "", c.name, "-h"); code != exitOK || out != "" || !strings.Contains(errOut, "rekey "+c.name) {
			t.Errorf("rekey %s -h: code %d, stdout %q, stderr %q; want 0 and its flags on stderr", c.name, code, out, errOut)
		}
	}
}
