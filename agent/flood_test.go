package agent_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// The flood test runs the agent in a child process under a low open-file
// limit, and a flooder in another child process under an unprivileged uid.
const (
	envFloodAgent = "REKEY_TEST_FLOOD_AGENT" // the open-file limit to run the agent under
	envFlooder    = "REKEY_TEST_FLOODER"     // the socket to flood
	envFloodConns = "REKEY_TEST_FLOOD_CONNS" // how many connections to open
)

// floodAgentChild lowers its open-file limit (soft and hard) and runs an
// agent until its stdin closes.
func floodAgentChild() int {
	n, _ := strconv.ParseUint(os.Getenv(envFloodAgent), 10, 64)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
		fmt.Fprintln(os.Stderr, "flood agent: set open-file limit:", err)
		return 2
	}
	a, err := agent.New(agent.Config{
		PrefsDir: os.Getenv(envCrashPrefs), StateDir: os.Getenv(envCrashState), PassphraseFile: os.Getenv(envCrashPass),
		Socket: os.Getenv(envSecondSocket), Debounce: 10 * time.Millisecond, Settle: 50 * time.Millisecond,
		Version: "flood-agent", Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "flood agent:", err)
		return 1
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "flood agent:", err)
		return 1
	}
	return 0
}

// flooderChild opens many connections to sock, sends each a health request
// and keeps every one the agent answers open, opening a new one whenever the
// agent closes an idle one, until stdin closes. It prints one "ready" line
// once every first attempt has ended.
func flooderChild(sock string) int {
	n, _ := strconv.Atoi(os.Getenv(envFloodConns))
	var answered, closed, pending atomic.Int64
	stop := make(chan struct{})
	var first sync.WaitGroup
	for range n {
		first.Add(1)
		go func() {
			once := sync.OnceFunc(first.Done)
			defer once()
			for {
				ok := holdConn(sock, &answered, &closed, &pending, once, stop)
				if !ok {
					return
				}
			}
		}()
	}
	first.Wait()
	fmt.Printf("ready answered=%d closed=%d pending=%d\n", answered.Load(), closed.Load(), pending.Load())
	io.Copy(io.Discard, os.Stdin)
	close(stop)
	return 0
}

// holdConn opens one connection and holds it while the agent keeps it. It
// reports whether to open another (the agent closed an answered one).
func holdConn(sock string, answered, closed, pending *atomic.Int64, firstDone func(), stop <-chan struct{}) bool {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		closed.Add(1)
		return false
	}
	defer c.Close()
	go func() { <-stop; c.Close() }()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprint(c, "GET /v1/health HTTP/1.1\r\nHost: rekey\r\n\r\n")
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	switch {
	case err == nil && strings.Contains(line, "200"):
		answered.Add(1)
	case errors.Is(err, os.ErrDeadlineExceeded):
		pending.Add(1) // never accepted: the connection waits in the backlog
	default:
		closed.Add(1) // refused at accept
		firstDone()
		return false
	}
	firstDone()
	c.SetDeadline(time.Time{})
	io.Copy(io.Discard, r) // until the agent closes it (idle timeout) or stop
	select {
	case <-stop:
		return false
	default:
		return true
	}
}

func TestConnectionFloodUnderALowFileLimitLeavesRootAndPayloadsServed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("flooding as another uid needs root to start the flooder (CI runs this test as root)")
	}
	h := newHarness(t)
	h.stop()
	if err := os.Chmod(h.dir, 0o755); err != nil { // the flooder's uid must reach the socket
		t.Fatal(err)
	}
	sock := filepath.Join(h.dir, "flood.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const fileLimit, floodConns = 256, 1100
	agentCmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	agentCmd.Env = append(os.Environ(), envFloodAgent+"="+strconv.Itoa(fileLimit), envSecondSocket+"="+sock,
		envCrashPrefs+"="+h.prefs, envCrashState+"="+h.state, envCrashPass+"="+h.pass)
	var agentLog syncBuffer
	agentCmd.Stdout, agentCmd.Stderr = &agentLog, &agentLog
	agentIn, err := agentCmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agentCmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		agentIn.Close()
		if err := agentCmd.Wait(); err != nil {
			t.Errorf("agent child: %v\n%s", err, agentLog.String())
		}
	}()
	client := waitAPI(t, sock)

	flooder := exec.CommandContext(ctx, copyExecutable(t), "-test.run=^$")
	flooder.Env = append(os.Environ(), envFlooder+"="+sock, envFloodConns+"="+strconv.Itoa(floodConns))
	flooder.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	flooder.Stderr = os.Stderr
	floodIn, err := flooder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	floodOut, err := flooder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := flooder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { floodIn.Close(); flooder.Wait() }()
	ready, err := bufio.NewReader(floodOut).ReadString('\n')
	if err != nil || !strings.HasPrefix(ready, "ready") {
		t.Fatalf("flooder: %q, %v", ready, err)
	}
	t.Logf("flood of %d connections as uid 65534 against an agent with %d descriptors: %s", floodConns, fileLimit, strings.TrimSpace(ready))

	// Root is answered during the flood.
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	defer scancel()
	if _, err := client.Status(sctx); err != nil {
		t.Fatalf("root's GET /v1/status during the flood: %v\nagent log:\n%s", err, agentLog.String())
	}
	// A payload pushed during the flood is applied when seen.
	events, err := client.Events(sctx)
	if err != nil {
		t.Fatalf("root's event stream during the flood: %v", err)
	}
	defer events.Close()
	k := h.key("")
	h.push(withID("during-flood", h.entry("Flood", payload.IntentAdd, "", k, testPassphrase)))
	for {
		e, err := events.Next()
		if err != nil {
			t.Fatalf("waiting for the payload pushed during the flood: %v\nagent log:\n%s", err, agentLog.String())
		}
		if e.Kind == store.EvImportState && e.ImportID == "during-flood" {
			if e.Fields["state"] == string(store.ImportApplied) {
				break
			}
			if e.Fields["state"] == string(store.ImportFailed) {
				t.Fatalf("the payload pushed during the flood failed: %s", e.Message)
			}
		}
	}
	if strings.Contains(agentLog.String(), "too many open files") {
		t.Fatalf("the agent ran out of descriptors:\n%s", agentLog.String())
	}
}

// syncBuffer collects output written from other goroutines (a child's
// output, the agent's log) while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// copyExecutable copies the test binary into a folder every uid may read, so
// that an unprivileged child can run it.
func copyExecutable(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rkbin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "rekey.test")
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}
