package soak

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/api"
)

// childEnv, when set to a folder, makes the test binary run an agent on that
// folder instead of the tests: the soak kills it with SIGKILL.
const childEnv = "REKEY_SOAK_CHILD_DIR"

// testPassphrase is in the passphrase file of every agent the tests start.
const testPassphrase = "fleet passphrase for the soak"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(runChild(dir))
	}
	os.Exit(m.Run())
}

// layout is where an agent's folders and files live under one folder.
type layout struct{ dir, prefs, state, socket, pass, log string }

func layoutOf(dir string) layout {
	return layout{dir: dir, prefs: filepath.Join(dir, "managed"), state: filepath.Join(dir, "state"),
		socket: filepath.Join(dir, "s.sock"), pass: filepath.Join(dir, "passphrase"), log: filepath.Join(dir, "agent.log")}
}

// runChild runs an agent on dir until SIGTERM (or SIGKILL).
func runChild(dir string) int {
	l := layoutOf(dir)
	logf, err := os.OpenFile(l.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open agent log:", err)
		return 1
	}
	defer logf.Close()
	log := slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	a, err := agent.New(agent.Config{AppleRequestsPerMinute: 1e9, PrefsDir: l.prefs, StateDir: l.state, Socket: l.socket, PassphraseFile: l.pass,
		Debounce: 5 * time.Millisecond, Settle: 20 * time.Millisecond,
		Backoff: func(int) time.Duration { return 50 * time.Millisecond },
		Logger:  log, Version: "soak"})
	if err != nil {
		log.Error("start agent", "err", err)
		return 1
	}
	defer a.Close()
	// REKEY_SOAK_CPUPROFILE profiles the agent until a clean stop (a
	// killed agent leaves an empty file): for finding what slows it down.
	if p := os.Getenv("REKEY_SOAK_CPUPROFILE"); p != "" {
		if f, err := os.Create(fmt.Sprintf("%s.%d", p, os.Getpid())); err == nil {
			pprof.StartCPUProfile(f)
			defer f.Close()
			defer pprof.StopCPUProfile()
		}
	}
	if err := a.Run(ctx); err != nil {
		log.Error("agent run", "err", err)
		return 1
	}
	return 0
}

// newLayout makes the folders of an agent under a short temporary folder
// (a socket path must fit in 104 bytes) with the passphrase file in place.
func newLayout(t testing.TB) layout {
	t.Helper()
	dir, err := os.MkdirTemp("", "rksoak")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l := layoutOf(dir)
	if err := os.MkdirAll(l.prefs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.pass, []byte(testPassphrase+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return l
}

// child is the agent running as a child process.
type child struct {
	t      testing.TB
	l      layout
	cmd    *exec.Cmd
	done   chan error // the process's exit, once
	exited bool
	err    error
}

// startChild starts an agent process on l and waits until its socket answers.
func startChild(t testing.TB, l layout) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+l.dir)
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start agent process: %v", err)
	}
	c := &child{t: t, l: l, cmd: cmd, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	t.Cleanup(func() { c.kill() })
	c.waitReady()
	return c
}

// waitReady polls the socket until the agent answers: the OS (process start,
// socket bind) is what is waited for here.
func (c *child) waitReady() {
	c.t.Helper()
	cl := api.NewClient(c.l.socket)
	defer cl.Close()
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cl.Health(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case err := <-c.done:
			c.exited, c.err = true, err
			c.t.Fatalf("agent process exited before it answered: %v\n%s", err, c.logTail())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("agent did not answer on %s: %v\n%s", c.l.socket, err, c.logTail())
		}
	}
}

// kill ends the process with SIGKILL and waits for it; it may be called twice.
func (c *child) kill() {
	if c.exited {
		return
	}
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.err, c.exited = <-c.done, true
}

// stop ends the process with SIGTERM, as a service manager does, and fails
// the test when it does not exit cleanly.
func (c *child) stop() {
	c.t.Helper()
	if c.exited {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		c.exited, c.err = true, err
		if err != nil {
			c.t.Errorf("agent exit after SIGTERM: %v\n%s", err, c.logTail())
		}
	case <-time.After(60 * time.Second):
		c.t.Errorf("agent did not stop within a minute of SIGTERM\n%s", c.logTail())
		c.kill()
	}
}

// logTail is the end of the agent's log.
func (c *child) logTail() string {
	b, _ := os.ReadFile(c.l.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// rss is the child's resident set size in bytes, read from /proc.
func (c *child) rss() (int64, error) {
	return rssOf(c.cmd.Process.Pid)
}

// errNoProc: the platform has no /proc to measure memory with.
var errNoProc = errors.New("no /proc/<pid>/status on this platform")

func rssOf(pid int) (int64, error) {
	if runtime.GOOS != "linux" {
		return 0, errNoProc
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read process status: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmRSS %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS line in /proc/%d/status", pid)
}

// unixHTTP is an HTTP client that talks to the agent's socket.
func unixHTTP(socket string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 4,
	}}
}
