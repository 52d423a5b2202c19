package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// statusJSON runs `rekey status --json` and decodes it.
func statusJSON(t *testing.T, sock string) api.Status {
	t.Helper()
	code, out, errOut := runAt(t, sock, "", "status", "--json")
	var st api.Status
	if code != exitOK {
		t.Fatalf("status --json: exit %d: %s", code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json is not the API's JSON: %v\n%s", err, out)
	}
	return st
}

// TestCLIScriptAgainstTheRealAgent walks an admin's session: add, a rotation
// waiting for a password, a wrong and a right password, rollback and sync,
// every command against the real agent over its socket.
func TestCLIScriptAgainstTheRealAgent(t *testing.T) {
	l := startLiveAgent(t, map[string]string{payload.KeyAuthCheck: payload.AuthOff})
	const rotationPW = "rotation password 2027"
	a := l.key("", true)
	addE := l.entry("cli-add", "Acme", payload.IntentAdd, a, livePassphrase)
	l.push(addE)
	l.waitImport(addE.ImportID, store.ImportApplied)
	if e := l.waitSync(); e.Kind != store.EvSyncFinished {
		t.Fatalf("first sync: %+v", e)
	}

	code, out, errOut := runAt(t, l.socket, "", "status")
	if code != exitOK {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"rekey live-test", "Tenant     Acme (", "active     Acme  " + a.ClientID + "  key " + a.KeyID, "25 devices", "Pending imports: 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	st := statusJSON(t, l.socket)
	if len(st.Tenants) != 1 || st.Tenants[0].Active == nil || st.Tenants[0].Active.KeyID != a.KeyID || st.Tenants[0].Devices != 25 {
		t.Fatalf("status --json: %+v", st.Tenants)
	}
	tenant := st.Tenants[0].ID

	// A rotation whose password is not in the passphrase file waits for a UI.
	// Apple never learns key b, so the rotation stays unconfirmed and the
	// previous credential stays for rollback.
	b := l.key(a.ClientID, false)
	updE := l.entry("cli-rotate", "Acme 2027", payload.IntentAuto, b, rotationPW)
	l.push(addE, updE)
	l.waitImport(updE.ImportID, store.ImportPendingUnlock)
	code, out, _ = runAt(t, l.socket, "", "imports")
	if code != exitOK || !strings.Contains(out, "cli-rotate") || !strings.Contains(out, "pending-unlock") {
		t.Fatalf("imports: exit %d\n%s", code, out)
	}
	code, out, errOut = runAt(t, l.socket, "not it\n", "unlock", updE.ImportID, "--password-stdin", "--update", "Acme")
	if code != exitFailure || out != "" || !strings.Contains(errOut, "wrong") || strings.Contains(errOut, "not it") {
		t.Fatalf("unlock with a wrong password: exit %d, out %q, err %q", code, out, errOut)
	}
	code, out, errOut = runAt(t, l.socket, rotationPW+"\n", "unlock", updE.ImportID, "--password-stdin", "--update", "Acme")
	if code != exitOK || !strings.Contains(out, "Import cli-rotate (Acme 2027): applied") {
		t.Fatalf("unlock: exit %d, out %q, err %q", code, out, errOut)
	}
	// The cut-over schedules a sync under key b, which Apple refuses; let it
	// end before rolling back.
	if e := l.waitSync(); e.Kind != store.EvSyncFailed {
		t.Fatalf("the sync under key b: %s %s", e.Kind, e.Message)
	}
	st = statusJSON(t, l.socket)
	if ts := st.Tenants[0]; ts.ID != tenant || ts.Active.KeyID != b.KeyID || ts.Previous == nil || ts.Previous.KeyID != a.KeyID {
		t.Fatalf("after unlock: %+v", ts)
	}
	code, out, _ = runAt(t, l.socket, "", "imports", updE.ImportID)
	if code != exitOK || !strings.Contains(out, "applied") || !strings.Contains(out, "Acme 2027") {
		t.Fatalf("imports %s: exit %d\n%s", updE.ImportID, code, out)
	}
	code, out, _ = runAt(t, l.socket, "", "credentials", "--json")
	var creds struct{ Credentials []store.Credential }
	if code != exitOK || json.Unmarshal([]byte(out), &creds) != nil || len(creds.Credentials) != 2 {
		t.Fatalf("credentials --json: exit %d\n%s", code, out)
	}

	code, out, errOut = runAt(t, l.socket, "", "rollback", "acme")
	if code != exitOK || !strings.Contains(out, "Rolled back Acme") || !strings.Contains(out, "key "+a.KeyID) {
		t.Fatalf("rollback: exit %d, out %q, err %q", code, out, errOut)
	}
	if ts := statusJSON(t, l.socket).Tenants[0]; ts.Active.KeyID != a.KeyID {
		t.Fatalf("after rollback the active key is %s, want %s", ts.Active.KeyID, a.KeyID)
	}
	// Sync under the restored key works (Apple still knows key a).
	code, out, errOut = runAt(t, l.socket, "", "sync", tenant)
	if code != exitOK || !strings.Contains(out+errOut, "25") {
		t.Fatalf("sync: exit %d, out %q, err %q; fake refused %q, stats %+v", code, out, errOut, l.apple.Rejections(), l.apple.Stats())
	}
	l.healthy()
}

func TestCLIUsageAndFailureExitCodesAgainstTheRealAgent(t *testing.T) {
	l := startLiveAgent(t, nil)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"status", "extra"}, exitUsage, "no arguments"},
		{[]string{"rollback"}, exitUsage, "tenant"},
		{[]string{"unlock", "some-id"}, exitUsage, "--password-stdin"},
		{[]string{"unlock", "some-id", "--add", "--update", "x", "--password-stdin"}, exitUsage, "exclude"},
		{[]string{"rollback", "Nobody"}, exitFailure, "no tenant"},
		{[]string{"sync", "Nobody"}, exitFailure, "no tenant"},
		{[]string{"imports", "no-such-import"}, exitFailure, "not found"},
		{[]string{"unlock", "no-such-import", "--password-stdin"}, exitFailure, "not found"},
	} {
		code, out, errOut := runAt(t, l.socket, "pw\n", c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d (want %d), out %q, err %q (want it to say %q in one line)", c.args, code, c.code, out, errOut, c.want)
		}
	}
	l.stop() // the socket goes with the agent
	code, out, errOut := runAt(t, l.socket, "", "status")
	if code != exitFailure || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "not running") {
		t.Fatalf("after stop: exit %d, out %q, err %q", code, out, errOut)
	}
}

func TestEventsFollowsTheRealAgent(t *testing.T) {
	l := startLiveAgent(t, nil)
	a := l.key("", true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut := newSyncBuffer(), newSyncBuffer()
	code := make(chan int, 1)
	go func() {
		env := &Env{Stdin: strings.NewReader(""), Stdout: out, Stderr: errOut, Getenv: socketEnv(l.socket)}
		code <- Run(ctx, env, []string{"events"})
	}()
	l.untilFollowed(t, out)
	l.push(l.entry("ev-add", "Initech", payload.IntentAdd, a, livePassphrase))
	out.waitFor(t, string(store.EvImportState))
	out.waitFor(t, "import=ev-add")
	out.waitFor(t, string(store.EvSyncFinished))
	cancel()
	if c := <-code; c != exitOK {
		t.Fatalf("events after Ctrl-C: exit %d, err %q", c, errOut.String())
	}
	if strings.Contains(out.String(), livePassphrase) || strings.Contains(out.String(), "BEGIN") {
		t.Fatalf("events printed a secret:\n%s", out.String())
	}
}

// untilFollowed pushes payloads without entries, each a little different,
// until the output of a following command shows one: from then on the
// command's stream is open. (Nothing else says when it has subscribed.)
func (l *liveAgent) untilFollowed(t *testing.T, out *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; !strings.Contains(out.String(), string(store.EvSourceRead)); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("the events command never showed a payload read; out:\n%s", out.String())
		}
		l.settings[payload.KeySyncInterval] = fmt.Sprintf("%dh", 24+i)
		l.push()
		select {
		case <-out.changed:
		case <-time.After(200 * time.Millisecond): // not seen: the stream opened after that push; push again
		}
	}
}

// healthy fails the test when the store's own check finds a problem.
func (l *liveAgent) healthy() {
	l.t.Helper()
	problems, err := l.agent.Store().Check(context.Background(), 0)
	if err != nil || len(problems) > 0 {
		l.t.Fatalf("store check: %v %+v", err, problems)
	}
}

// TestInteractiveUnlockAgainstTheRealAgent types a wrong and then the right
// password at the prompt of a pseudo-terminal; the real agent decrypts, sees
// the import is the update of the only credential with its Client ID, and
// rotates.
func TestInteractiveUnlockAgainstTheRealAgent(t *testing.T) {
	l := startLiveAgent(t, map[string]string{payload.KeyAuthCheck: payload.AuthOff})
	const rightPW, wrongPW = "typed at the prompt 5e", "not the one 0c"
	a := l.key("", true)
	addE := l.entry("tty-add", "Acme", payload.IntentAdd, a, livePassphrase)
	l.push(addE)
	l.waitImport(addE.ImportID, store.ImportApplied)
	b := l.key(a.ClientID, false)
	updE := l.entry("tty-rotate", "Acme 2027", payload.IntentAuto, b, rightPW)
	l.push(addE, updE)
	l.waitImport(updE.ImportID, store.ImportPendingUnlock)

	ptmx, tty, screen, stdout, done := runOnTerminal(t, l.socket, []string{"unlock", updE.ImportID})

	screen.waitFor(t, "Name       Acme 2027")
	screen.waitFor(t, "Password for this import: ")
	waitEchoOff(t, tty)
	type_(t, ptmx, wrongPW+"\r")
	screen.waitFor(t, "That password is wrong; try again.")
	screen.waitFor(t, "wrong; try again.\r\nPassword for this import: ")
	waitEchoOff(t, tty)
	type_(t, ptmx, rightPW+"\r")
	if code := <-done; code != exitOK {
		t.Fatalf("exit %d; screen:\n%s", code, screen.String())
	}
	if !strings.Contains(stdout.String(), "Import tty-rotate (Acme 2027): applied") {
		t.Fatalf("stdout %q", stdout.String())
	}
	if s := screen.String(); strings.Contains(s, rightPW) || strings.Contains(s, wrongPW) {
		t.Fatalf("a password was echoed on the terminal:\n%s", s)
	}
	ts := statusJSON(t, l.socket).Tenants[0]
	if ts.Active.KeyID != b.KeyID || ts.Previous == nil || ts.Previous.KeyID != a.KeyID {
		t.Fatalf("after the interactive unlock: %+v", ts)
	}
}

// waitEchoOff waits until the terminal no longer echoes. The prompt is
// printed just before echo is turned off, so a password typed ahead of that
// would be echoed by the terminal itself: the test types as a person does,
// after the switch (the OS's terminal state is what is polled).
func waitEchoOff(t *testing.T, tty *os.File) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tio, err := unix.IoctlGetTermios(int(tty.Fd()), getTermios)
		if err != nil {
			t.Fatalf("read terminal settings: %v", err)
		}
		if tio.Lflag&unix.ECHO == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the terminal still echoes at the password prompt")
		}
		time.Sleep(time.Millisecond)
	}
}
