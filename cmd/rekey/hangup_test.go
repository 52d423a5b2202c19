package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/api/apitest"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/store"
)

// TestHangupRescansThePayload: a mode change alone is not acted on by the
// watcher (attribute events are ignored), so a payload that was refused for
// being world-writable is read again only at the periodic rescan (an hour
// here) — or at once when `rekey run` gets SIGHUP.
func TestHangupRescansThePayload(t *testing.T) {
	dir := apitest.ShortTempDir(t)
	prefs, sock, pass := filepath.Join(dir, "managed"), filepath.Join(dir, "s.sock"), filepath.Join(dir, "passphrase")
	if err := os.MkdirAll(prefs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pass, []byte(livePassphrase+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := writeRefusedPayload(t, prefs)

	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	logs := newSyncBuffer()
	go func() {
		env := &Env{Stdin: strings.NewReader(""), Stdout: logs, Stderr: logs, Getenv: func(string) string { return "" }}
		code <- Run(ctx, env, []string{"run", "--prefs-dir", prefs, "--state-dir", filepath.Join(dir, "state"),
			"--socket", sock, "--passphrase-file", pass, "--rescan", "1h"})
	}()
	defer func() {
		cancel()
		if c := <-code; c != exitOK {
			t.Errorf("rekey run: exit %d\n%s", c, logs.String())
		}
	}()
	waitForSocket(t, sock) // SIGHUP is handled from before the socket answers
	c := api.NewClient(sock)
	defer c.Close()
	stream, err := c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if st, err := c.Status(ctx); err != nil || st.Source.LastError == "" {
		nextEvent(t, stream, store.EvSourceRefused) // not refused yet: it will be
	}

	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, stream, store.EvSourceRead)
	logs.waitFor(t, "SIGHUP: rescanning")
	if st, err := c.Status(ctx); err != nil || st.Source.LastError != "" {
		t.Fatalf("after SIGHUP the payload should be read without a problem: %+v, %v", st.Source, err)
	}
}

// nextEvent reads the stream until an event of kind arrives, failing after a deadline.
func nextEvent(t *testing.T, s *api.EventStream, kind store.EventKind) store.Event {
	t.Helper()
	got := make(chan store.Event, 1)
	go func() {
		for {
			e, err := s.Next()
			if err != nil {
				close(got)
				return
			}
			if e.Kind == kind {
				got <- e
				return
			}
		}
	}()
	select {
	case e, ok := <-got:
		if !ok {
			t.Fatalf("event stream ended before a %s event", kind)
		}
		return e
	case <-time.After(20 * time.Second):
		t.Fatalf("no %s event within 20 s", kind)
	}
	return store.Event{}
}

// TestHangupReopensTheLogFile: newsyslog renames the log and sends SIGHUP to
// the pid in the pid file; the agent then writes to a new file at the path,
// and removes the pid file when it stops.
func TestHangupReopensTheLogFile(t *testing.T) {
	dir := apitest.ShortTempDir(t)
	prefs, sock, pass := filepath.Join(dir, "managed"), filepath.Join(dir, "s.sock"), filepath.Join(dir, "passphrase")
	logPath, pidPath := filepath.Join(dir, "rekey.log"), filepath.Join(dir, "rekey.pid")
	if err := os.MkdirAll(prefs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pass, []byte(livePassphrase+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := writeRefusedPayload(t, prefs)

	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	stderr := newSyncBuffer()
	go func() {
		env := &Env{Stdin: strings.NewReader(""), Stdout: stderr, Stderr: stderr, Getenv: func(string) string { return "" }}
		code <- Run(ctx, env, []string{"run", "--prefs-dir", prefs, "--state-dir", filepath.Join(dir, "state"),
			"--socket", sock, "--passphrase-file", pass, "--rescan", "1h", "--log-file", logPath, "--pid-file", pidPath})
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if c := <-code; c != exitOK {
				t.Errorf("rekey run: exit %d\n%s", c, stderr.String())
			}
		}
	}
	defer stop()
	waitForSocket(t, sock)
	if got, want := readText(t, pidPath), strconv.Itoa(os.Getpid())+"\n"; got != want {
		t.Errorf("pid file holds %q, want %q", got, want)
	}
	c := api.NewClient(sock)
	defer c.Close()
	stream, err := c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if st, err := c.Status(ctx); err != nil || st.Source.LastError == "" {
		nextEvent(t, stream, store.EvSourceRefused) // refused at start: only the rescan reads it
	}

	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(logPath, logPath+".0"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The handler reopens the log and logs its line before it asks for the
	// rescan, so once the rescan reads the payload the line is in the new file.
	nextEvent(t, stream, store.EvSourceRead)
	if got := readText(t, logPath); !strings.Contains(got, "SIGHUP: rescanning") {
		t.Errorf("new log file lacks the SIGHUP line:\n%s", got)
	}
	if got := readText(t, logPath+".0"); strings.Contains(got, "SIGHUP") || !strings.Contains(got, "msg=") {
		t.Errorf("rotated log file should hold the start-up lines and nothing after the rotation:\n%s", got)
	}
	if s := stderr.String(); s != "" {
		t.Errorf("with --log-file nothing goes to stderr, got:\n%s", s)
	}
	stop()
	if got := readText(t, logPath); !strings.Contains(got, "agent stopped") {
		t.Errorf("new log file lacks the stop line:\n%s", got)
	}
	if _, err := os.Stat(pidPath); !os.IsNotExist(err) {
		t.Errorf("pid file left behind after the agent stopped: %v", err)
	}
}

func readText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// writeRefusedPayload writes a valid payload that is world-writable, so the
// agent refuses it until its mode is fixed and it is read again.
func writeRefusedPayload(t *testing.T, prefs string) string {
	t.Helper()
	doc, err := payload.MarshalPayload(nil, map[string]string{payload.KeySyncInterval: "0"})
	if err != nil {
		t.Fatal(err)
	}
	file := platform.PrefsFile(prefs, platform.Domain)
	if err := os.WriteFile(file, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o666); err != nil {
		t.Fatal(err)
	}
	return file
}
