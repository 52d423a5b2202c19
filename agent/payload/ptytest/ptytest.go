// Package ptytest runs a program on a pseudo-terminal and answers its
// prompts, for interop tests with tools such as age that read passphrases
// from /dev/tty.
package ptytest

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// Step waits until the program has printed Expect, then types Send.
type Step struct {
	Expect string
	Send   string
}

// timeout bounds each wait; it only fires when the program under test hangs.
const timeout = 2 * time.Minute

// Run starts cmd as the leader of a new session whose controlling terminal
// is a fresh pty, plays steps, waits for it to exit and returns everything it
// printed on the terminal and its exit error.
func Run(t testing.TB, cmd *exec.Cmd, steps ...Step) (string, error) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	defer ptmx.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		tty.Close()
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	tty.Close()
	out := newTranscript(ptmx)
	for _, s := range steps {
		if !out.waitFor(s.Expect) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("%s never printed %q; terminal so far:\n%s", cmd.Path, s.Expect, out.text())
		}
		if _, err := ptmx.Write([]byte(s.Send)); err != nil {
			t.Fatalf("type into pty: %v", err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not exit in %v", cmd.Path, timeout)
	}
	out.waitClosed()
	return out.text(), err
}

// Terminal opens a pty pair for in-process use: the caller reads passwords
// from tty as a program would, and types into ptmx. Both close at cleanup;
// what is echoed to ptmx is drained so that writes never block.
func Terminal(t testing.TB) (ptmx, tty *os.File) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	tr := newTranscript(ptmx)
	t.Cleanup(func() {
		tty.Close()
		ptmx.Close()
		tr.waitClosed()
	})
	return ptmx, tty
}

// transcript collects what a pty prints, from a reader goroutine.
type transcript struct {
	chunks chan []byte
	buf    bytes.Buffer // output not yet matched by a step
	all    bytes.Buffer // everything
}

func newTranscript(ptmx *os.File) *transcript {
	tr := &transcript{chunks: make(chan []byte, 64)}
	go func() {
		defer close(tr.chunks)
		for {
			b := make([]byte, 4096)
			n, err := ptmx.Read(b)
			if n > 0 {
				tr.chunks <- b[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	return tr
}

// waitFor consumes output until it holds s; false on timeout or end.
func (tr *transcript) waitFor(s string) bool {
	deadline := time.After(timeout)
	for !strings.Contains(tr.buf.String(), s) {
		select {
		case b, ok := <-tr.chunks:
			if !ok {
				return false
			}
			tr.buf.Write(b)
			tr.all.Write(b)
		case <-deadline:
			return false
		}
	}
	// Forget what was matched so the next step waits for new output.
	rest := tr.buf.String()[strings.Index(tr.buf.String(), s)+len(s):]
	tr.buf.Reset()
	tr.buf.WriteString(rest)
	return true
}

func (tr *transcript) waitClosed() {
	for b := range tr.chunks {
		tr.all.Write(b)
	}
}

func (tr *transcript) text() string { return tr.all.String() }
