package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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
	r := startRefused(t)
	if err := os.Chmod(r.payload, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, r.stream, store.EvSourceRead)
	r.out.waitFor(t, "SIGHUP: rescanning")
	if st, err := r.client.Status(context.Background()); err != nil || st.Source.LastError != "" {
		t.Fatalf("after SIGHUP the payload should be read without a problem: %+v, %v", st.Source, err)
	}
}

// refusedRun is `rekey run` in this process on temporary folders whose
// payload it refused for being world-writable, with an event stream open.
type refusedRun struct {
	payload string
	out     *syncBuffer // its stdout and stderr
	client  *api.Client
	stream  *api.EventStream
	stop    func() // ends it (once) and checks its exit code
}

// startRefused starts `rekey run` with the extra flags (an hour's rescan,
// so only SIGHUP reads the payload again) and waits until it has refused
// the payload.
func startRefused(t *testing.T, extra ...string) *refusedRun {
	t.Helper()
	dir := apitest.ShortTempDir(t)
	prefs, sock, pass := filepath.Join(dir, "managed"), filepath.Join(dir, "s.sock"), filepath.Join(dir, "passphrase")
	if err := os.MkdirAll(prefs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pass, []byte(livePassphrase+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &refusedRun{payload: writeRefusedPayload(t, prefs), out: newSyncBuffer()}
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() {
		env := &Env{Stdin: strings.NewReader(""), Stdout: r.out, Stderr: r.out, Getenv: func(string) string { return "" }}
		code <- Run(ctx, env, append([]string{"run", "--prefs-dir", prefs, "--state-dir", filepath.Join(dir, "state"),
			"--socket", sock, "--passphrase-file", pass, "--rescan", "1h"}, extra...))
	}()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			if c := <-code; c != exitOK {
				t.Errorf("rekey run: exit %d\n%s", c, r.out.String())
			}
		})
	}
	t.Cleanup(r.stop)
	waitForSocket(t, sock) // SIGHUP is handled from before the socket answers
	r.client = api.NewClient(sock)
	t.Cleanup(r.client.Close)
	stream, err := r.client.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r.stream = stream
	t.Cleanup(func() { stream.Close() })
	if st, err := r.client.Status(ctx); err != nil || st.Source.LastError == "" {
		nextEvent(t, stream, store.EvSourceRefused) // not refused yet: it will be
	}
	return r
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
	logPath, pidPath := filepath.Join(dir, "rekey.log"), filepath.Join(dir, "rekey.pid")
	r := startRefused(t, "--log-file", logPath, "--pid-file", pidPath)
	if got, want := readText(t, pidPath), strconv.Itoa(os.Getpid())+"\n"; got != want {
		t.Errorf("pid file holds %q, want %q", got, want)
	}
	if err := os.Chmod(r.payload, 0o644); err != nil {
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
	nextEvent(t, r.stream, store.EvSourceRead)
	if got := readText(t, logPath); !strings.Contains(got, "SIGHUP: rescanning") {
		t.Errorf("new log file lacks the SIGHUP line:\n%s", got)
	}
	if got := readText(t, logPath+".0"); strings.Contains(got, "SIGHUP") || !strings.Contains(got, "msg=") {
		t.Errorf("rotated log file should hold the start-up lines and nothing after the rotation:\n%s", got)
	}
	if s := r.out.String(); s != "" {
		t.Errorf("with --log-file nothing goes to stderr, got:\n%s", s)
	}
	r.stop()
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
