package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/store"
)

// envSecondAgent makes the test binary a second agent on the folders named by
// the crash tests' variables, with its own socket.
const (
	envSecondAgent  = "REKEY_TEST_SECOND_AGENT"
	envSecondSocket = "REKEY_TEST_SECOND_SOCKET"
)

// secondAgentChild starts an agent and runs it briefly. It exits 1 with the
// start-up error when New refuses, 0 after running.
func secondAgentChild() int {
	a, err := agent.New(agent.Config{
		PrefsDir: os.Getenv(envCrashPrefs), StateDir: os.Getenv(envCrashState), PassphraseFile: os.Getenv(envCrashPass),
		Socket: os.Getenv(envSecondSocket), Version: "second-agent",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "rekey:", err)
		return 1
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	a.Run(ctx)
	return 0
}

func TestSecondAgentOnTheSameStateFolderTouchesNothing(t *testing.T) {
	gate := &gateChecker{entered: make(chan struct{}), release: make(chan struct{})}
	h := newHarness(t, func(c *agent.Config) { c.Checker = gate })
	a := h.key("")
	add := h.entry("Acme", payload.IntentAdd, "", a, testPassphrase)
	h.push(add)
	h.waitImport("", store.ImportApplied)
	h.waitFor("first sync", func(e store.Event) bool { return e.Kind == store.EvSyncFinished })
	b := h.key(a.ClientID)
	gate.keyID.Store(b.KeyID)
	released := false
	release := func() {
		if !released {
			released = true
			close(gate.release)
		}
	}
	t.Cleanup(release)
	upd := withID("upd", h.entry("Acme", payload.IntentUpdate, "Acme", b, testPassphrase))
	h.push(add, upd)
	<-gate.entered // a rotation in progress: staged, waiting on its auth check

	before := stateFiles(t, h.state)
	socket := filepath.Join(h.dir, "second.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envSecondAgent+"=1", envSecondSocket+"="+socket,
		envCrashPrefs+"="+h.prefs, envCrashState+"="+h.state, envCrashPass+"="+h.pass)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("second agent: %v, want exit status 1; output:\n%s", err, out.String())
	}
	line := strings.TrimSpace(out.String())
	if strings.Count(line, "\n") != 0 || !strings.Contains(line, fmt.Sprintf("pid %d", os.Getpid())) ||
		!strings.Contains(line, "another rekey agent") {
		t.Fatalf("second agent said %q; want one line naming pid %d", line, os.Getpid())
	}
	if _, err := os.Lstat(socket); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the second agent created its socket: %v", err)
	}
	if after := stateFiles(t, h.state); after != before {
		t.Fatalf("the second agent changed the state folder:\nbefore %s\nafter  %s", before, after)
	}
	rots := rotationsOf(t, h.agent.Store(), "upd")
	if len(rots) != 1 || rots[0].Step != store.StepStaged {
		t.Fatalf("the first agent's rotation after the second start: %+v; want one, still staged", rots)
	}
	release()
	h.waitImport("upd", store.ImportApplied)
	if got := h.active("").KeyID; got != b.KeyID {
		t.Fatalf("active key %s after the rotation, want %s", got, b.KeyID)
	}
	if n := len(h.tenants()); n != 1 {
		t.Fatalf("%d tenants, want 1", n)
	}
}

// stateFiles describes the state folder's files (name, size, content hash),
// leaving out the status plist, which the running agent rewrites on its own,
// and the WAL index (-shm), which the running agent's readers update.
func stateFiles(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		if strings.Contains(e.Name(), "status.plist") || strings.HasSuffix(e.Name(), "-shm") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%d:%x ", e.Name(), len(data), sha256.Sum256(data))
	}
	return b.String()
}

func TestAgentRefusesAStateFolderItCannotTrust(t *testing.T) {
	for name, spoil := range map[string]func(dir string) error{
		"owned by another uid": func(dir string) error { return os.Chown(dir, os.Geteuid()+1, -1) },
		"writable by others":   func(dir string) error { return os.Chmod(dir, 0o777) },
	} {
		t.Run(name, func(t *testing.T) {
			if name == "owned by another uid" && os.Geteuid() != 0 {
				t.Skip("giving a folder away needs root (CI runs this test as root)")
			}
			dir := t.TempDir()
			state := filepath.Join(dir, "state")
			if err := os.Mkdir(state, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := spoil(state); err != nil {
				t.Fatal(err)
			}
			a, err := agent.New(agent.Config{PrefsDir: dir, StateDir: state})
			if err == nil {
				a.Close()
				t.Fatal("the agent started on an untrusted state folder")
			}
			if !strings.Contains(err.Error(), "fix: ") {
				t.Fatalf("refusal without a fix: %v", err)
			}
			if ents, _ := os.ReadDir(state); len(ents) != 0 {
				t.Fatalf("the refused start left files in the state folder: %v", ents)
			}
		})
	}
}

// TestLockHolderWithoutAPidIsNotCalledPidZero: a holder that has not written
// its pid yet (an empty lock file) is named as "another process".
func TestLockHolderWithoutAPidIsNotCalledPidZero(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(state, store.LockFile)
	held, err := platform.LockExclusive(path)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	if err := os.Truncate(path, 0); err != nil { // as before the holder writes its pid
		t.Fatal(err)
	}
	_, err = agent.New(agent.Config{PrefsDir: filepath.Join(dir, "prefs"), StateDir: state,
		Socket: filepath.Join(dir, "s.sock"), PassphraseFile: filepath.Join(dir, "pass")})
	if !errors.Is(err, agent.ErrAnotherAgent) || strings.Contains(err.Error(), "pid 0") ||
		!strings.Contains(err.Error(), path+" is held by another process") {
		t.Fatalf("start beside a holder with no pid: %v; want ErrAnotherAgent naming another process, not pid 0", err)
	}
}
