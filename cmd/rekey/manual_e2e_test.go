package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// keyFile writes k's PEM to a 0600 file, as an admin keeps Apple's download.
func keyFile(t *testing.T, k appletest.Key) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), k.KeyID+".pem")
	if err := os.WriteFile(p, k.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// secretFree fails when text holds k's PEM or a line of its body.
func secretFree(t *testing.T, where, text string, keys ...appletest.Key) {
	t.Helper()
	for _, k := range keys {
		for _, line := range strings.Split(string(k.PEM), "\n") {
			if len(line) > 20 && !strings.HasPrefix(line, "-----") && strings.Contains(text, line) {
				t.Fatalf("%s holds key material of %s", where, k.KeyID)
			}
		}
	}
}

// TestManualWorkflowsFromTheCLI walks the manual path: add from stdin, a
// rotation to a key Apple rejects (nothing changes), the corrected rotation
// with each step shown, check, and retry and dismiss of payload imports.
func TestManualWorkflowsFromTheCLI(t *testing.T) {
	l := startLiveAgent(t, map[string]string{payload.KeyAuthCheck: payload.AuthRequired})
	a := l.key("", true)
	code, out, errOut := runAt(t, l.socket, string(a.PEM), "add", "--name", "Acme", "--client-id", a.ClientID, "--key-id", a.KeyID,
		"--key", "-", "--token-url", l.apple.TokenURL(), "--api-base-url", l.apple.APIBaseURL())
	if code != exitOK || !strings.Contains(out, `Added: tenant "Acme"`) || !strings.Contains(errOut, string(store.EvAuthCheck)) {
		t.Fatalf("add: exit %d, out %q, err %q", code, out, errOut)
	}
	secretFree(t, "add's output", out+errOut, a)
	if e := l.waitSync(); e.Kind != store.EvSyncFinished {
		t.Fatalf("the added tenant's first sync: %+v", e)
	}

	typo := l.key(a.ClientID, false)
	code, out, errOut = runAt(t, l.socket, "", "rotate", "Acme", "--name", "Acme 2027", "--client-id", typo.ClientID,
		"--key-id", typo.KeyID, "--key", keyFile(t, typo))
	if code != exitFailure || out != "" || !strings.Contains(errOut, "rejected") || !strings.Contains(errOut, "failed") ||
		!strings.Contains(errOut, "run the command again") {
		t.Fatalf("rotate to a key Apple rejects: exit %d, out %q, err %q", code, out, errOut)
	}
	st := statusJSON(t, l.socket)
	if ts := st.Tenants[0]; ts.Active.KeyID != a.KeyID || ts.Previous != nil || ts.Devices != 25 {
		t.Fatalf("a failed rotation changed the tenant: %+v", ts)
	}

	b := l.key(a.ClientID, true)
	code, out, errOut = runAt(t, l.socket, "", "rotate", a.KeyID, "--name", "Acme 2027", "--client-id", b.ClientID,
		"--key-id", b.KeyID, "--key", keyFile(t, b))
	if code != exitOK || !strings.Contains(out, "is confirmed") {
		t.Fatalf("rotate: exit %d, out %q, err %q", code, out, errOut)
	}
	for _, step := range []string{"staged", string(store.EvAuthCheck), "validated", "cutover", "confirmed"} {
		if !strings.Contains(errOut, "  "+step+" ") {
			t.Errorf("rotate did not show the step %s:\n%s", step, errOut)
		}
	}
	secretFree(t, "rotate's output", out+errOut, a, typo, b)
	if ts := statusJSON(t, l.socket).Tenants[0]; ts.Active.KeyID != b.KeyID || ts.Devices != 25 || ts.Coverage == 0 {
		t.Fatalf("after the rotation: %+v", ts)
	}

	code, out, errOut = runAt(t, l.socket, "", "check")
	if code != exitOK || !strings.Contains(out, "Acme 2027") || !strings.Contains(out, "accepted") {
		t.Fatalf("check: exit %d, out %q, err %q", code, out, errOut)
	}
	secretFree(t, "check's output", out+errOut, a, typo, b)
	if _, out, _ := runAt(t, l.socket, "", "status"); !strings.Contains(out, "last token ") {
		t.Errorf("status does not show the last accepted check:\n%s", out)
	}
	l.apple.Fail(appletest.Fault{Endpoint: appletest.TokenEndpoint, Mode: appletest.InvalidClient})
	code, out, _ = runAt(t, l.socket, "", "check", "Acme 2027", "--json")
	var checks struct{ Checks []api.CheckAnswer }
	if code != exitFailure || json.Unmarshal([]byte(out), &checks) != nil || len(checks.Checks) != 1 || checks.Checks[0].Outcome != "rejected" {
		t.Fatalf("check of a rejected key: exit %d, out %q", code, out)
	}
	secretFree(t, "check --json", out, a, typo, b)
	for _, args := range [][]string{{"status", "--json"}, {"credentials", "--json"}, {"imports", "--json"}} {
		_, out, _ := runAt(t, l.socket, "", args...)
		secretFree(t, "rekey "+args[0], out, a, typo, b)
	}

	late := l.key("", false)
	lateE := l.entry("cli-late", "Initech", payload.IntentAdd, late, livePassphrase)
	l.push(lateE)
	l.waitImport(lateE.ImportID, store.ImportFailed)
	if code, _, errOut := runAt(t, l.socket, "", "retry", "cli-late"); code != exitFailure || !strings.Contains(errOut, "rejected") {
		t.Fatalf("retry while Apple still rejects the key: exit %d, err %q", code, errOut)
	}
	l.apple.RegisterCredential(late.ClientID, late.KeyID, &late.Private.PublicKey)
	code, out, errOut = runAt(t, l.socket, "", "retry", "cli-late")
	if code != exitOK || !strings.Contains(out, "Import cli-late (Initech): applied") {
		t.Fatalf("retry: exit %d, out %q, err %q", code, out, errOut)
	}
	locked := l.entry("cli-locked", "Umbrella", payload.IntentAdd, l.key("", true), "not the fleet passphrase")
	l.push(lateE, locked)
	l.waitImport(locked.ImportID, store.ImportPendingUnlock)
	code, out, errOut = runAt(t, l.socket, "", "dismiss", "cli-locked", "--json")
	var imp store.Import
	if code != exitOK || json.Unmarshal([]byte(out), &imp) != nil || imp.State != store.ImportDismissed {
		t.Fatalf("dismiss: exit %d, out %q, err %q", code, out, errOut)
	}
	code, out, _ = runAt(t, l.socket, "", "retry", "cli-locked", "--json")
	var body api.ErrorBody
	if code != exitFailure || json.Unmarshal([]byte(out), &body) != nil || body.Error.Code != "conflict" {
		t.Fatalf("retry of a dismissed import with --json: exit %d, out %q", code, out)
	}
	l.healthy()
}

func TestAKeyOnTheCommandLineIsRefusedWithoutBeingRepeated(t *testing.T) {
	k, err := appletest.GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"rotate", "Acme", "--name", "A", "--client-id", k.ClientID, "--key-id", k.KeyID, "--key", string(k.PEM)},
		{"add", "--name", "A", "--client-id", k.ClientID, "--key-id", k.KeyID, "--key", string(k.PEM), "--json"},
		{"seal", "--name", "A", "--client-id", k.ClientID, "--key-id", k.KeyID, "--key", string(k.PEM), "--out", "x.plist"},
	} {
		code, out, errOut := runCLI(t, "", args...)
		if code != exitUsage || !strings.Contains(out+errOut, "shell history") {
			t.Errorf("rekey %s with the PEM as --key: exit %d, out %q, err %q; want a usage error", args[0], code, out, errOut)
		}
		secretFree(t, "the refusal", out+errOut, k)
	}
}

func TestRotateAndAddRefuseMissingFieldsWithoutATerminal(t *testing.T) {
	for _, args := range [][]string{
		{"rotate", "Acme", "--client-id", "BUSINESSAPI.x", "--key-id", "k", "--key", "-"},
		{"add", "--name", "A", "--client-id", "BUSINESSAPI.x", "--key", "k.pem"},
		{"rotate", "Acme", "--name", "A", "--client-id", "C", "--key-id", "K", "--key", "k.pem", "--auth-check", "sometimes"},
	} {
		code, _, errOut := runCLI(t, "", args...)
		if code != exitUsage || !strings.Contains(errOut, "--") {
			t.Errorf("rekey %v: exit %d, err %q; want a usage error naming the flag", args, code, errOut)
		}
	}
}

// TestRotateAsksForMissingFieldsInWizardOrder types the fields the flags
// left out at the prompts, in the order the Change Credential wizard asks.
func TestRotateAsksForMissingFieldsInWizardOrder(t *testing.T) {
	l := startLiveAgent(t, map[string]string{payload.KeyAuthCheck: payload.AuthOff})
	a := l.key("", true)
	l.push(l.entry("tty-add", "Acme", payload.IntentAdd, a, livePassphrase))
	l.waitImport("tty-add", store.ImportApplied)
	b := l.key(a.ClientID, true)
	path := filepath.Join(t.TempDir(), "My Keys", "acme 2027.pem") // dropped onto the terminal, it arrives quoted
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.PEM, 0o600); err != nil {
		t.Fatal(err)
	}

	ptmx, _, screen, stdout, done := runOnTerminal(t, l.socket, []string{"rotate", "Acme", "--client-id", b.ClientID})
	screen.waitFor(t, "Credential name: ")
	type_(t, ptmx, "Acme 2027\r")
	screen.waitFor(t, "Key ID: ")
	type_(t, ptmx, b.KeyID+"\r")
	screen.waitFor(t, "Private key file (.pem): ")
	type_(t, ptmx, "'"+path+"' \r")
	if code := <-done; code != exitOK {
		t.Fatalf("exit %d; screen:\n%s", code, screen.String())
	}
	if s := screen.String(); strings.Contains(s, "Client ID: ") || strings.Index(s, "Credential name") > strings.Index(s, "Key ID") {
		t.Fatalf("prompts out of wizard order, or for a field the flags gave:\n%s", s)
	}
	secretFree(t, "the terminal", screen.String()+stdout.String(), b)
	if ts := statusJSON(t, l.socket).Tenants[0]; ts.Active.KeyID != b.KeyID || ts.Active.Name != "Acme 2027" {
		t.Fatalf("after the interactive rotation: %+v", ts)
	}
}

// TestAKeyPastedOnTheTerminalIsNotShown: with --key - on a terminal, the
// other fields are asked for, then the pasted PEM is read with echo off up
// to its END line, without the Ctrl-D a pipe needs.
func TestAKeyPastedOnTheTerminalIsNotShown(t *testing.T) {
	l := startLiveAgent(t, map[string]string{payload.KeyAuthCheck: payload.AuthRequired})
	k := l.key("", true)
	ptmx, _, screen, stdout, done := runOnTerminal(t, l.socket, []string{"add", "--client-id", k.ClientID, "--key-id", k.KeyID,
		"--key", "-", "--token-url", l.apple.TokenURL(), "--api-base-url", l.apple.APIBaseURL()})
	screen.waitFor(t, "Credential name: ")
	type_(t, ptmx, "Acme\r")
	screen.waitFor(t, "Paste the private key (PEM; it is not shown): ")
	type_(t, ptmx, strings.ReplaceAll(string(k.PEM), "\n", "\r"))
	if code := <-done; code != exitOK {
		t.Fatalf("exit %d; screen:\n%s", code, screen.String())
	}
	if !strings.Contains(stdout.String(), `Added: tenant "Acme"`) {
		t.Fatalf("stdout %q; screen:\n%s", stdout.String(), screen.String())
	}
	secretFree(t, "the terminal", screen.String()+stdout.String(), k)
	if ts := statusJSON(t, l.socket).Tenants; len(ts) != 1 || ts[0].Active.KeyID != k.KeyID {
		t.Fatalf("after the pasted add: %+v", ts)
	}
}

// TestCtrlCAtAPromptEndsTheCommand: Ctrl-C cancels the command's context
// (main turns SIGINT into that); a prompt waiting on the terminal gives up,
// and a prompt without echo turns it back on.
func TestCtrlCAtAPromptEndsTheCommand(t *testing.T) {
	sock := startAgent(t, fakeAgent()) // i9 waits for a password
	k, err := appletest.GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args   []string
		prompt string
	}{
		{[]string{"add"}, "Credential name: "},
		{[]string{"add", "--name", "A", "--client-id", "BUSINESSAPI.x", "--key-id", "k", "--key", "-"}, "Paste the private key (PEM; it is not shown): "},
		{[]string{"unlock", "i9"}, "Password for this import: "},
		{[]string{"seal", "--name", "A", "--client-id", k.ClientID, "--key-id", k.KeyID, "--key", keyFile(t, k),
			"--out", filepath.Join(t.TempDir(), "a.plist")}, "Passphrase: "},
	} {
		ptmx, tty, err := pty.Open()
		if err != nil {
			t.Fatal(err)
		}
		screen := newSyncBuffer()
		go io.Copy(screen, ptmx)
		ctx, interrupt := context.WithCancel(context.Background())
		env := &Env{Stdin: tty, Stdout: io.Discard, Stderr: tty, Getenv: socketEnv(sock)}
		done := make(chan int, 1)
		go func() { done <- Run(ctx, env, tc.args) }()
		screen.waitFor(t, tc.prompt)
		interrupt()
		select {
		case code := <-done:
			if code != exitFailure {
				t.Errorf("rekey %v interrupted at %q: exit %d, want %d", tc.args, tc.prompt, code, exitFailure)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("rekey %v still waits at %q after Ctrl-C", tc.args, tc.prompt)
		}
		screen.waitFor(t, "interrupted")
		tio, err := unix.IoctlGetTermios(int(tty.Fd()), getTermios)
		if err != nil || tio.Lflag&unix.ECHO == 0 {
			t.Errorf("after Ctrl-C at %q the terminal does not echo (%v)", tc.prompt, err)
		}
		tty.Close()
		ptmx.Close()
	}
}
