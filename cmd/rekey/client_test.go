package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/api/apitest"
	"github.com/rekeyd/rekey/store"
)

var t0 = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

// fakeAgent is a backend with one tenant that has rotated once, and one
// import waiting for a password.
func fakeAgent() *apitest.Fake {
	active := store.Credential{ID: "c2", TenantID: "t1", Name: "Acme 2026", ClientID: "BUSINESSAPI.9f1c", KeyID: "k-2026", Scope: "business.api", State: store.CredActive, Origin: store.OriginManaged, HasKey: true, CreatedAt: t0, ActivatedAt: t0.Add(time.Hour)}
	prev := store.Credential{ID: "c1", TenantID: "t1", Name: "Acme 2025", ClientID: "BUSINESSAPI.9f1c", KeyID: "k-2025", Scope: "business.api", State: store.CredPrevious, Origin: store.OriginManaged, HasKey: true, CreatedAt: t0}
	imp := store.Import{ID: "i9", Name: "Acme 2027", Source: "/Library/Managed Preferences/com.github.rekeyd.rekey.plist", Intent: "auto", State: store.ImportPendingUnlock, CreatedAt: t0, UpdatedAt: t0}
	summary := func(c store.Credential) *api.CredentialSummary {
		return &api.CredentialSummary{ID: c.ID, Name: c.Name, ClientID: c.ClientID, KeyID: c.KeyID, Since: c.ActivatedAt}
	}
	return &apitest.Fake{
		StatusFunc: func(context.Context) (api.Status, error) {
			return api.Status{
				Agent:          api.AgentInfo{Version: "1.2.3", PID: 4242, Started: t0},
				Source:         api.SourceInfo{Path: "/Library/Managed Preferences", LastRead: t0, LastError: "other.plist: owned by uid 501; fix with chown root"},
				Tenants:        []api.TenantStatus{{ID: "t1", Name: "Acme", Scope: "business.api", Active: summary(active), Previous: summary(prev), Devices: 1200, Coverage: 950, LastSync: t0}},
				PendingImports: []store.Import{imp},
				LastRotation:   &store.Rotation{ID: "r1", TenantID: "t1", Step: store.StepCutover, UpdatedAt: t0.Add(time.Hour)},
			}, nil
		},
		CredentialsFunc: func(context.Context) ([]store.Credential, error) { return []store.Credential{active, prev}, nil },
		TenantsFunc: func(context.Context) ([]store.Tenant, error) {
			return []store.Tenant{{ID: "t1", Name: "Acme", Scope: "business.api", CreatedAt: t0}}, nil
		},
		ImportsFunc: func(context.Context) ([]store.Import, error) { return []store.Import{imp}, nil },
		ImportFunc: func(_ context.Context, id string) (store.Import, error) {
			if id != imp.ID {
				return store.Import{}, fmt.Errorf("import %s: %w", id, store.ErrNotFound)
			}
			return imp, nil
		},
	}
}

// startAgent serves f on a real socket and returns its path.
func startAgent(t *testing.T, f *apitest.Fake) string {
	t.Helper()
	sock, _ := apitest.Serve(t, api.Config{Backend: f, Version: "1.2.3"})
	return sock
}

// runAt runs the CLI in process with REKEY_SOCKET=sock.
func runAt(t *testing.T, sock, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := &Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errOut, Getenv: socketEnv(sock)}
	code := Run(context.Background(), env, args)
	return code, out.String(), errOut.String()
}

func socketEnv(sock string) func(string) string {
	return func(k string) string {
		if k == "REKEY_SOCKET" {
			return sock
		}
		return ""
	}
}

// syncBuffer is a writer safe to read while a command writes to it.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{}, 1)} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor blocks until the buffer holds want, or fails the test after 10s.
func (s *syncBuffer) waitFor(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for !strings.Contains(s.String(), want) {
		select {
		case <-s.changed:
		case <-timeout:
			t.Fatalf("timed out waiting for %q; have:\n%s", want, s.String())
		}
	}
}

func TestAgentNotRunningIsOneClearLine(t *testing.T) {
	sock := filepath.Join(apitest.ShortTempDir(t), "none.sock")
	for _, args := range [][]string{{"status"}, {"imports"}, {"credentials"}, {"events"}, {"rollback", "t1"}, {"sync", "t1"}, {"unlock", "i9", "--password-stdin"}} {
		code, out, errOut := runAt(t, sock, "pw\n", args...)
		if code != exitFailure || out != "" || strings.Count(errOut, "\n") != 1 ||
			!strings.Contains(errOut, "not running") || !strings.Contains(errOut, "sudo rekey start") || !strings.Contains(errOut, "rekey run") {
			t.Errorf("%v: code %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
}

func TestSocketFlagBeatsEnvironment(t *testing.T) {
	sock := startAgent(t, fakeAgent())
	missing := filepath.Join(apitest.ShortTempDir(t), "none.sock")
	if code, _, errOut := runAt(t, missing, "", "status", "--socket", sock); code != exitOK {
		t.Fatalf("--socket ignored: %d %s", code, errOut)
	}
	if code, _, _ := runAt(t, sock, "", "status", "--socket", missing); code != exitFailure {
		t.Fatalf("--socket should win over REKEY_SOCKET, got %d", code)
	}
	env := &Env{Getenv: func(string) string { return "" }}
	if got, err := resolveSocket(env, ""); err != nil || got == "" {
		t.Fatalf("default socket %q, %v", got, err)
	}
}

// runOnTerminal runs the CLI with args on a new pseudo-terminal (its stdin
// and stderr) against the agent at sock. It returns the terminal's master
// side to type into, its slave side (to read its modes), what the terminal
// shows, what went to stdout, and the exit code once the command ends. The
// terminal is closed when the test ends.
func runOnTerminal(t *testing.T, sock string, args []string) (ptmx, tty *os.File, screen, stdout *syncBuffer, done <-chan int) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ptmx.Close(); tty.Close() })
	screen, stdout = newSyncBuffer(), newSyncBuffer()
	go io.Copy(screen, ptmx)
	env := &Env{Stdin: tty, Stdout: stdout, Stderr: tty, Getenv: socketEnv(sock)}
	code := make(chan int, 1)
	go func() { code <- Run(context.Background(), env, args) }()
	return ptmx, tty, screen, stdout, code
}
