package main

import (
	"context"
	"os"
	"path/filepath"
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
	doc, err := payload.MarshalPayload(nil, map[string]string{payload.KeySyncInterval: "0"})
	if err != nil {
		t.Fatal(err)
	}
	file := platform.PrefsFile(prefs, platform.Domain)
	if err := os.WriteFile(file, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o666); err != nil { // world-writable: refused
		t.Fatal(err)
	}

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
