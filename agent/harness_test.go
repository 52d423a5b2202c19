package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/store"
)

// testPassphrase is in every harness's passphrase file.
const testPassphrase = "fleet passphrase for tests"

// harness is a real agent on temporary folders, a real fsnotify watch, a real
// SQLite store and a local fake of Apple's API. Tests push payloads the way
// an MDM does (write a new file, rename it into place) and wait for events.
type harness struct {
	t      testing.TB
	dir    string
	prefs  string
	state  string
	socket string
	pass   string
	apple  *appletest.Server
	agent  *agent.Agent
	events <-chan store.Event
	cancel func()
	done   chan error
	// Settings written into every payload; the fake Apple's URLs by default.
	settings map[string]string
	last     payload.PayloadEntry // the entry addTenant pushed
}

// harnessOption adjusts the agent's config before it starts.
type harnessOption func(*agent.Config)

// newHarness starts an agent. It is stopped and closed when the test ends.
func newHarness(t testing.TB, opts ...harnessOption) *harness {
	t.Helper()
	dir, err := os.MkdirTemp("", "rk") // short: a socket path must fit in 104 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := &harness{t: t, dir: dir, prefs: filepath.Join(dir, "managed"), state: filepath.Join(dir, "state"),
		socket: filepath.Join(dir, "s.sock"), pass: filepath.Join(dir, "passphrase")}
	if err := os.MkdirAll(h.prefs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.pass, []byte(testPassphrase+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.apple = appletest.New()
	t.Cleanup(h.apple.Close)
	h.apple.SetDevices(25)
	h.settings = map[string]string{payload.KeyTokenURL: h.apple.TokenURL(), payload.KeyAPIBaseURL: h.apple.APIBaseURL()}
	h.start(opts...)
	return h
}

func (h *harness) config() agent.Config {
	return agent.Config{AppleRequestsPerMinute: 1e9, PrefsDir: h.prefs, StateDir: h.state, Socket: h.socket, PassphraseFile: h.pass,
		Debounce: 10 * time.Millisecond, Settle: 50 * time.Millisecond, Version: "test"}
}

// start runs an agent on the harness's folders.
func (h *harness) start(opts ...harnessOption) {
	h.t.Helper()
	cfg := h.config()
	for _, o := range opts {
		o(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		h.t.Fatalf("new agent: %v", err)
	}
	h.agent = a
	h.events, _ = a.Subscribe(4096)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- a.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

// stop ends the agent and closes its store; it may be called more than once.
func (h *harness) stop() {
	if h.agent == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("agent run: %v", err)
	}
	h.agent.Close()
	h.agent = nil
}

// key makes a P-256 credential registered with the fake Apple. With a
// Client ID the key replaces that client's registered key.
func (h *harness) key(clientID string) appletest.Key {
	h.t.Helper()
	k, err := appletest.GenerateKey(clientID)
	if err != nil {
		h.t.Fatal(err)
	}
	h.apple.RegisterCredential(k.ClientID, k.KeyID, &k.Private.PublicKey)
	return k
}

// entry seals k for a payload at a low work factor.
func (h *harness) entry(name, intent, target string, k appletest.Key, pass string) payload.PayloadEntry {
	h.t.Helper()
	ct, err := payload.Seal(payload.SealInput{Name: name, ClientID: k.ClientID, KeyID: k.KeyID, KeyPEM: k.PEM}, pass, 10)
	if err != nil {
		h.t.Fatalf("seal: %v", err)
	}
	return payload.PayloadEntry{Intent: intent, Target: target, Name: name, Ciphertext: ct}
}

// payloadPath is the machine-scope payload file.
func (h *harness) payloadPath() string { return platform.PrefsFile(h.prefs, platform.Domain) }

// push writes a payload with entries the way an MDM agent does.
func (h *harness) push(entries ...payload.PayloadEntry) {
	h.t.Helper()
	doc, err := payload.MarshalPayload(entries, h.settings)
	if err != nil {
		h.t.Fatalf("marshal payload: %v", err)
	}
	if err := platform.WriteFileAtomic(h.payloadPath(), doc, 0o644); err != nil {
		h.t.Fatalf("push payload: %v", err)
	}
}

// waitFor reads events until one matches, failing the test after a generous deadline.
func (h *harness) waitFor(what string, match func(store.Event) bool) store.Event {
	h.t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case e, ok := <-h.events:
			if !ok {
				h.t.Fatalf("event stream closed while waiting for %s", what)
			}
			if match(e) {
				return e
			}
		case <-deadline.C:
			h.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitImport waits until import id (any import when id is "") reaches state.
func (h *harness) waitImport(id string, state store.ImportState) store.Import {
	h.t.Helper()
	e := h.waitFor("import "+id+" "+string(state), func(e store.Event) bool {
		return e.Kind == store.EvImportState && e.Fields["state"] == string(state) && (id == "" || e.ImportID == id)
	})
	imp, err := h.agent.Store().Import(context.Background(), e.ImportID)
	if err != nil {
		h.t.Fatal(err)
	}
	return imp
}

// active returns the tenant's active credential (the only tenant when tenantID is "").
func (h *harness) active(tenantID string) store.Credential {
	h.t.Helper()
	creds, err := h.agent.Store().Credentials(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	var found []store.Credential
	for _, c := range creds {
		if c.State == store.CredActive && (tenantID == "" || c.TenantID == tenantID) {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		h.t.Fatalf("want exactly one active credential, have %d: %+v", len(found), found)
	}
	return found[0]
}

// healthy fails the test when the store's own check finds a problem.
func (h *harness) healthy() {
	h.t.Helper()
	problems, err := h.agent.Store().Check(context.Background(), time.Hour)
	if err != nil || len(problems) > 0 {
		h.t.Fatalf("store check: %v %+v", err, problems)
	}
}
