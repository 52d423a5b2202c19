package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/api/apitest"
	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/store"
)

// livePassphrase is in every live agent's passphrase file.
const livePassphrase = "live fleet passphrase"

// liveAgent is the real agent (agent.New) on temporary folders with real
// fsnotify, SQLite and socket, and a local fake of Apple: what the CLI talks
// to in production. (agent's own harness is in package agent_test, out of reach.)
type liveAgent struct {
	t        testing.TB
	prefs    string
	state    string
	socket   string
	apple    *appletest.Server
	agent    *agent.Agent
	events   <-chan store.Event
	settings map[string]string
	cancel   func()
	done     chan error
}

// startLiveAgent runs an agent until the test ends, once its socket answers.
func startLiveAgent(t testing.TB, settings map[string]string) *liveAgent {
	t.Helper()
	dir := apitest.ShortTempDir(t) // a socket path must fit in 104 bytes
	l := &liveAgent{t: t, prefs: filepath.Join(dir, "managed"), state: filepath.Join(dir, "state"), socket: filepath.Join(dir, "s.sock")}
	pass := filepath.Join(dir, "passphrase")
	if err := os.MkdirAll(l.prefs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pass, []byte(livePassphrase+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l.apple = appletest.New()
	t.Cleanup(l.apple.Close)
	l.apple.SetDevices(25)
	l.settings = map[string]string{payload.KeyTokenURL: l.apple.TokenURL(), payload.KeyAPIBaseURL: l.apple.APIBaseURL()}
	for k, v := range settings {
		l.settings[k] = v
	}
	a, err := agent.New(agent.Config{AppleRequestsPerMinute: 1e9, PrefsDir: l.prefs, StateDir: l.state, Socket: l.socket, PassphraseFile: pass,
		Debounce: 10 * time.Millisecond, Settle: 50 * time.Millisecond, Version: "live-test"})
	if err != nil {
		t.Fatalf("new agent: %v", err)
	}
	l.agent = a
	l.events, _ = a.Subscribe(4096)
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel, l.done = cancel, make(chan error, 1)
	go func() { l.done <- a.Run(ctx) }()
	t.Cleanup(l.stop)
	waitForSocket(t, l.socket)
	return l
}

// stop ends the agent and closes its store; it may be called more than once.
func (l *liveAgent) stop() {
	if l.agent == nil {
		return
	}
	l.cancel()
	if err := <-l.done; err != nil {
		l.t.Errorf("agent run: %v", err)
	}
	l.agent.Close()
	l.agent = nil
}

// waitForSocket polls until an agent answers on sock: the OS creating the
// socket is what is waited for.
func waitForSocket(t testing.TB, sock string) {
	t.Helper()
	c := api.NewClient(sock)
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := c.Health(context.Background())
		if err == nil {
			return
		}
		if !errors.Is(err, api.ErrAgentNotRunning) || time.Now().After(deadline) {
			t.Fatalf("agent on %s: %v", sock, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// key makes a P-256 credential. With register, the fake Apple accepts it
// (replacing any key registered for the same Client ID); without, Apple
// rejects it, so a rotation to it is never confirmed.
func (l *liveAgent) key(clientID string, register bool) appletest.Key {
	l.t.Helper()
	k, err := appletest.GenerateKey(clientID)
	if err != nil {
		l.t.Fatal(err)
	}
	if register {
		l.apple.RegisterCredential(k.ClientID, k.KeyID, &k.Private.PublicKey)
	}
	return k
}

// entry seals k for a payload at a low work factor.
func (l *liveAgent) entry(id, name, intent string, k appletest.Key, pass string) payload.PayloadEntry {
	l.t.Helper()
	ct, err := payload.Seal(payload.SealInput{Name: name, ClientID: k.ClientID, KeyID: k.KeyID, KeyPEM: k.PEM}, pass, 10)
	if err != nil {
		l.t.Fatalf("seal: %v", err)
	}
	return payload.PayloadEntry{ImportID: id, Intent: intent, Name: name, Ciphertext: ct}
}

// push writes the payload the way an MDM agent does.
func (l *liveAgent) push(entries ...payload.PayloadEntry) {
	l.t.Helper()
	doc, err := payload.MarshalPayload(entries, l.settings)
	if err != nil {
		l.t.Fatalf("marshal payload: %v", err)
	}
	if err := platform.WriteFileAtomic(platform.PrefsFile(l.prefs, platform.Domain), doc, 0o644); err != nil {
		l.t.Fatalf("push payload: %v", err)
	}
}

// waitFor reads the agent's events until one matches.
func (l *liveAgent) waitFor(what string, match func(store.Event) bool) store.Event {
	l.t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case e := <-l.events:
			if match(e) {
				return e
			}
		case <-deadline.C:
			l.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitImport waits until import id reaches state.
func (l *liveAgent) waitImport(id string, state store.ImportState) {
	l.t.Helper()
	l.waitFor("import "+id+" "+string(state), func(e store.Event) bool {
		return e.Kind == store.EvImportState && e.ImportID == id && e.Fields["state"] == string(state)
	})
}

// waitSync waits until a sync of any tenant ends, well or not.
func (l *liveAgent) waitSync() store.Event {
	l.t.Helper()
	return l.waitFor("a sync to end", func(e store.Event) bool {
		return e.Kind == store.EvSyncFinished || e.Kind == store.EvSyncFailed
	})
}
