package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/api/apitest"
	"github.com/rekeyd/rekey/store"
)

const (
	goodPW = "pw-good-456"
	badPW  = "pw-bad-123"
)

// unlockingAgent accepts goodPW and, when no intent is given, asks for a
// choice. It records the last request it accepted.
func unlockingAgent(got *api.UnlockRequest) *apitest.Fake {
	f := fakeAgent()
	f.UnlockFunc = func(_ context.Context, id string, req api.UnlockRequest) (store.Import, error) {
		if string(req.Password) != goodPW {
			return store.Import{}, api.ErrWrongPassword
		}
		if req.Intent == "" {
			return store.Import{}, api.ErrNeedsChoice
		}
		*got = api.UnlockRequest{Password: api.Secret(string(req.Password)), Intent: req.Intent, Target: req.Target}
		return store.Import{ID: id, Name: "Acme 2027", State: store.ImportApplied}, nil
	}
	return f
}

func TestUnlockWithPasswordOnStdin(t *testing.T) {
	var got api.UnlockRequest
	sock := startAgent(t, unlockingAgent(&got))
	code, out, errOut := runAt(t, sock, goodPW+"\n", "unlock", "i9", "--update", "Acme 2026", "--password-stdin")
	if code != exitOK || !strings.Contains(out, "Import i9 (Acme 2027): applied") {
		t.Fatalf("code %d, out %q, err %q", code, out, errOut)
	}
	if string(got.Password) != goodPW || got.Intent != "update" || got.Target != "Acme 2026" {
		t.Fatalf("agent got %q %q %q", got.Password, got.Intent, got.Target)
	}
	code, out, _ = runAt(t, sock, goodPW+"\r\n", "unlock", "--add", "--password-stdin", "--json", "i9")
	var imp store.Import
	if code != exitOK || json.Unmarshal([]byte(out), &imp) != nil || imp.State != store.ImportApplied || got.Intent != "add" {
		t.Fatalf("--json: code %d, out %q, intent %q", code, out, got.Intent)
	}
}

func TestUnlockFailuresAreClearAndNeverEchoThePassword(t *testing.T) {
	var got api.UnlockRequest
	sock := startAgent(t, unlockingAgent(&got))
	tests := []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"wrong password", badPW + "\n", []string{"unlock", "i9", "--add", "--password-stdin"}, exitFailure, "wrong password"},
		{"needs a choice", goodPW + "\n", []string{"unlock", "i9", "--password-stdin"}, exitFailure, "pass --add or --update"},
		{"unknown import", goodPW + "\n", []string{"unlock", "nope", "--add", "--password-stdin"}, exitFailure, "not found"},
		{"add and update", goodPW + "\n", []string{"unlock", "i9", "--add", "--update", "x", "--password-stdin"}, exitUsage, "exclude each other"},
		{"no terminal", "", []string{"unlock", "i9"}, exitUsage, "--password-stdin"},
		{"empty stdin", "", []string{"unlock", "i9", "--add", "--password-stdin"}, exitUsage, "no password"},
		{"no id", "", []string{"unlock"}, exitUsage, "import id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runAt(t, sock, tt.stdin, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Fatalf("code %d, stderr %q; want %d and %q", code, errOut, tt.code, tt.want)
			}
			if strings.Contains(out+errOut, goodPW) || strings.Contains(out+errOut, badPW) {
				t.Fatalf("password echoed: %q %q", out, errOut)
			}
		})
	}
}

func TestUnlockRefusesAFinalImport(t *testing.T) {
	f := fakeAgent()
	f.ImportFunc = func(context.Context, string) (store.Import, error) {
		return store.Import{ID: "i1", State: store.ImportApplied}, nil
	}
	sock := startAgent(t, f)
	code, _, errOut := runAt(t, sock, goodPW+"\n", "unlock", "i1", "--add", "--password-stdin")
	if code != exitFailure || !strings.Contains(errOut, "applied: there is nothing to unlock") {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
}

// TestInteractiveUnlockOnATerminal drives the prompts through a
// pseudo-terminal: a wrong password, the right one, then the choice of the
// credential to update.
func TestInteractiveUnlockOnATerminal(t *testing.T) {
	var got api.UnlockRequest
	sock := startAgent(t, unlockingAgent(&got))
	ptmx, _, screen, stdout, done := runOnTerminal(t, sock, []string{"unlock", "i9"})

	screen.waitFor(t, "Name       Acme 2027")
	screen.waitFor(t, "Password for this import: ")
	type_(t, ptmx, badPW+"\r")
	screen.waitFor(t, "That password is wrong; try again.")
	screen.waitFor(t, "wrong; try again.\r\nPassword for this import: ")
	type_(t, ptmx, goodPW+"\r")
	screen.waitFor(t, "[1] update Acme 2026 (BUSINESSAPI.9f1c, key k-2026)")
	screen.waitFor(t, "Choice: ")
	type_(t, ptmx, "7\r")
	screen.waitFor(t, "Type a, or a number from 1 to 1.")
	type_(t, ptmx, "1\r")
	if code := <-done; code != exitOK {
		t.Fatalf("exit %d; screen:\n%s", code, screen.String())
	}
	if !strings.Contains(stdout.String(), "Import i9 (Acme 2027): applied") {
		t.Fatalf("stdout %q", stdout.String())
	}
	if got.Intent != "update" || got.Target != "c2" {
		t.Fatalf("agent got intent %q target %q", got.Intent, got.Target)
	}
	if s := screen.String(); strings.Contains(s, goodPW) || strings.Contains(s, badPW) {
		t.Fatalf("a password was echoed on the terminal:\n%s", s)
	}
}

func type_(t *testing.T, ptmx *os.File, s string) {
	t.Helper()
	if _, err := ptmx.WriteString(s); err != nil && !errors.Is(err, os.ErrClosed) {
		t.Fatal(err)
	}
}

// TestInteractiveChoiceThenPassword covers an import waiting as needs-target:
// the choice comes first, then the agent asks for the password.
func TestInteractiveChoiceThenPassword(t *testing.T) {
	f := fakeAgent()
	f.ImportFunc = func(context.Context, string) (store.Import, error) {
		return store.Import{ID: "i7", Name: "Acme copy", Intent: "update", State: store.ImportNeedsTarget, Reason: "two credentials share the Client ID"}, nil
	}
	var got api.UnlockRequest
	f.UnlockFunc = func(_ context.Context, id string, req api.UnlockRequest) (store.Import, error) {
		if req.Intent == "" {
			return store.Import{}, api.ErrNeedsChoice
		}
		if len(req.Password) == 0 {
			return store.Import{}, api.ErrPasswordRequired
		}
		got = api.UnlockRequest{Password: api.Secret(string(req.Password)), Intent: req.Intent}
		return store.Import{ID: id, Name: "Acme copy", State: store.ImportApplied}, nil
	}
	sock := startAgent(t, f)
	ptmx, _, screen, _, done := runOnTerminal(t, sock, []string{"unlock", "i7"})

	screen.waitFor(t, "Reason     two credentials share the Client ID")
	screen.waitFor(t, "Choice: ")
	type_(t, ptmx, "a\r")
	screen.waitFor(t, "Password for this import: ")
	type_(t, ptmx, goodPW+"\r")
	if code := <-done; code != exitOK || got.Intent != "add" || string(got.Password) != goodPW {
		t.Fatalf("exit %d, agent got %q %q; screen:\n%s", code, got.Intent, got.Password, screen.String())
	}
	if strings.Contains(screen.String(), goodPW) {
		t.Fatal("password echoed")
	}
}
