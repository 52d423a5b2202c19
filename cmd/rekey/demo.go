package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"howett.net/plist"

	"github.com/google/uuid"
	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/store"
)

// demoWorkFactor keeps the demo quick; real payloads use 18 (age's default).
const (
	demoWorkFactor = 12
	demoDevices    = 1200
	demoPassphrase = "demo fleet passphrase"
	demoWait       = 10 * time.Second
)

func runDemo(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("demo", env.Stderr)
	keep := fs.Bool("keep", false, "keep the temporary folder afterwards")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "rekey-demo-")
	if err != nil {
		return fmt.Errorf("make a temporary folder: %w", err)
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	d := &demo{w: env.Stdout, dir: dir, prefs: filepath.Join(dir, "managed")}
	return d.run(ctx)
}

type demo struct {
	w      io.Writer
	dir    string
	prefs  string
	apple  *appletest.Server
	agent  *agent.Agent
	events <-chan store.Event
	start  time.Time
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.w, format+"\n", args...) }

func (d *demo) run(ctx context.Context) error {
	d.start = time.Now()
	d.apple = appletest.New()
	defer d.apple.Close()
	d.apple.SetDevices(demoDevices)
	ctx, stop, err := d.startAgent(ctx)
	if err != nil {
		return err
	}
	defer stop()

	d.say("rekey demo: an MDM rolls an Apple Business Manager API credential out to this machine.")
	d.say("Everything happens in %s; Apple's API is a local stand-in speaking the same protocol.", d.dir)

	d.say("\n1. Acme Corp has %d devices in Apple Business Manager. The admin creates an API key,", demoDevices)
	d.say("   seals it with `rekey seal` and the MDM pushes it as a managed preference.")
	keyA, err := d.newKey("")
	if err != nil {
		return err
	}
	if err := d.push(ctx, d.entry("Acme ABM", payload.IntentAdd, "", keyA, demoPassphrase)); err != nil {
		return err
	}
	if err := d.until(ctx, isKind(store.EvSyncFinished)); err != nil {
		return err
	}

	d.say("\n2. Months later the key is revoked in Apple Business Manager (a new one replaces it):")
	keyB, err := d.newKey(keyA.ClientID)
	if err != nil {
		return err
	}
	d.apple.RevokeTokens() // Apple ends the old key's sessions too
	tenantID, err := d.tenantID(ctx)
	if err != nil {
		return err
	}
	_ = d.agent.SyncTenant(ctx, tenantID)
	if err := d.until(ctx, isKind(store.EvSyncFailed)); err != nil {
		return err
	}

	d.say("\n3. The MDM pushes the new key as an update of \"Acme ABM\". The rotation runs step by step:")
	if err := d.push(ctx, d.entry("Acme ABM (2026 key)", payload.IntentUpdate, "Acme ABM", keyB, demoPassphrase)); err != nil {
		return err
	}
	if err := d.until(ctx, isKind(store.EvSyncFinished)); err != nil {
		return err
	}
	d.say("   The tenant kept every record: same tenant, no duplicates, now under the new key.")

	d.say("\n4. Two broken payloads arrive. Neither changes anything:")
	keyC, err := d.newKey("")
	if err != nil {
		return err
	}
	wrong := d.entry("Sealed with a password the agent was never given", payload.IntentAdd, "", keyC, "not the fleet passphrase")
	rsaEntry, err := d.rsaEntry()
	if err != nil {
		return err
	}
	if err := d.push(ctx, wrong, rsaEntry); err != nil {
		return err
	}
	if err := d.until(ctx, func(e store.Event) bool {
		return e.Kind == store.EvImportState && e.Fields["state"] == string(store.ImportFailed)
	}); err != nil {
		return err
	}
	if err := d.unchanged(ctx); err != nil {
		return err
	}
	return d.finish(ctx)
}

// startAgent runs an agent on the demo folder and subscribes to its events.
func (d *demo) startAgent(ctx context.Context) (context.Context, func(), error) {
	for _, sub := range []string{"managed", "state"} {
		if err := os.MkdirAll(filepath.Join(d.dir, sub), 0o700); err != nil {
			return nil, nil, fmt.Errorf("make demo folder: %w", err)
		}
	}
	pass := filepath.Join(d.dir, "passphrase")
	if err := os.WriteFile(pass, []byte(demoPassphrase+"\n"), 0o600); err != nil {
		return nil, nil, fmt.Errorf("write demo passphrase file: %w", err)
	}
	a, err := agent.New(agent.Config{AppleRequestsPerMinute: 1e9,
		PrefsDir: d.prefs, StateDir: filepath.Join(d.dir, "state"), Socket: filepath.Join(d.dir, "rekey.sock"),
		PassphraseFile: pass, Debounce: 20 * time.Millisecond, Version: version,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, nil, err
	}
	d.agent = a
	d.events, _ = a.Subscribe(1024)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return ctx, func() { cancel(); <-done; a.Close() }, nil
}

// newKey makes a P-256 key and registers it with the stand-in Apple. With a
// Client ID, the new key replaces that client's old one (which Apple then refuses).
func (d *demo) newKey(clientID string) (appletest.Key, error) {
	k, err := appletest.GenerateKey(clientID)
	if err != nil {
		return appletest.Key{}, err
	}
	d.apple.RegisterCredential(k.ClientID, k.KeyID, &k.Private.PublicKey)
	return k, nil
}

// entry seals a credential for the payload.
func (d *demo) entry(name, intent, target string, k appletest.Key, pass string) payload.PayloadEntry {
	ct, err := payload.Seal(payload.SealInput{Name: name, ClientID: k.ClientID, KeyID: k.KeyID, KeyPEM: k.PEM}, pass, demoWorkFactor)
	if err != nil {
		panic(fmt.Sprintf("demo: seal: %v", err)) // the demo's own inputs are valid
	}
	return payload.PayloadEntry{Intent: intent, Target: target, Name: name, Ciphertext: ct}
}

// push writes the payload the way an MDM agent does: a new file renamed into place.
func (d *demo) push(ctx context.Context, entries ...payload.PayloadEntry) error {
	doc, err := payload.MarshalPayload(entries, map[string]string{
		payload.KeyTokenURL: d.apple.TokenURL(), payload.KeyAPIBaseURL: d.apple.APIBaseURL(),
	})
	if err != nil {
		return fmt.Errorf("build payload: %w", err)
	}
	if err := platform.WriteFileAtomic(platform.PrefsFile(d.prefs, platform.Domain), doc, 0o644); err != nil {
		return fmt.Errorf("push payload: %w", err)
	}
	d.say("   [mdm] %s updated (%d entr%s)", platform.PrefsFile("…/managed", platform.Domain), len(entries), map[bool]string{true: "y", false: "ies"}[len(entries) == 1])
	return nil
}

func isKind(kind store.EventKind) func(store.Event) bool {
	return func(e store.Event) bool { return e.Kind == kind }
}

// until prints the agent's events until one matches done.
func (d *demo) until(ctx context.Context, done func(store.Event) bool) error {
	timeout := time.NewTimer(demoWait)
	defer timeout.Stop()
	for {
		select {
		case e, ok := <-d.events:
			if !ok {
				return errors.New("demo: the agent stopped")
			}
			if line := demoLine(e); line != "" {
				d.say("   %5.2fs  %s", time.Since(d.start).Seconds(), line)
			}
			if done(e) {
				return nil
			}
		case <-timeout.C:
			return errors.New("demo: the agent did not get there in time")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// demoLine is the readable form of an event; progress and routine reads are left out.
func demoLine(e store.Event) string {
	switch e.Kind {
	case store.EvSyncProgress, store.EvSourceRead, store.EvImportRecorded:
		return ""
	case store.EvRotationStaged, store.EvRotationValidated, store.EvRotationCutover, store.EvRotationConfirmed, store.EvRotationFailed:
		return fmt.Sprintf("%-10s %s", e.Fields["step"], e.Message)
	}
	return e.Message
}

func (d *demo) tenantID(ctx context.Context) (string, error) {
	ts, err := d.agent.Store().Tenants(ctx)
	if err != nil || len(ts) == 0 {
		return "", fmt.Errorf("demo: no tenant: %v", err)
	}
	return ts[0].ID, nil
}

// unchanged shows that the broken payloads touched neither credential nor data.
func (d *demo) unchanged(ctx context.Context) error {
	id, err := d.tenantID(ctx)
	if err != nil {
		return err
	}
	devices, coverage, err := d.agent.Store().Counts(ctx, id)
	if err != nil {
		return fmt.Errorf("demo: count records: %w", err)
	}
	creds, err := d.agent.Store().Credentials(ctx)
	if err != nil {
		return fmt.Errorf("demo: list credentials: %w", err)
	}
	for _, c := range creds {
		if c.State == store.CredActive {
			d.say("   Still active: %q; still %d devices and %d coverage records.", c.Name, devices, coverage)
		}
	}
	return nil
}

// finish prints the status table through the local socket, as `rekey status` does.
func (d *demo) finish(ctx context.Context) error {
	st, err := api.NewClient(filepath.Join(d.dir, "rekey.sock")).Status(ctx)
	if err != nil {
		return fmt.Errorf("demo: read status over the socket: %w", err)
	}
	d.say("\n5. `rekey status`, read over the local socket:\n")
	printStatus(d.w, st)
	d.say("\nDone in %.1fs. Try it for real: `rekey run --help`, `rekey seal --help`, docs/admin-guide.md.", time.Since(d.start).Seconds())
	return nil
}

// rsaEntry is what an admin gets by sealing the wrong kind of key with the
// plain age tool: a valid envelope around an RSA key.
func (d *demo) rsaEntry() (payload.PayloadEntry, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return payload.PayloadEntry{}, fmt.Errorf("generate RSA key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return payload.PayloadEntry{}, fmt.Errorf("encode RSA key: %w", err)
	}
	inner, err := plist.Marshal(map[string]string{
		payload.KeyClientID: apple.ClientIDPrefixBusiness + uuid.NewString(), payload.KeyKeyID: uuid.NewString(),
		payload.KeyPrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
	}, plist.XMLFormat)
	if err != nil {
		return payload.PayloadEntry{}, fmt.Errorf("encode credential: %w", err)
	}
	ct, err := payload.Encrypt(inner, demoPassphrase, demoWorkFactor)
	if err != nil {
		return payload.PayloadEntry{}, fmt.Errorf("seal RSA key: %w", err)
	}
	return payload.PayloadEntry{Intent: payload.IntentAdd, Name: "An RSA key sealed with plain age", Ciphertext: ct}, nil
}
