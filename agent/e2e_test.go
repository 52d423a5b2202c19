package agent_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// End-to-end tests: a real agent (fsnotify, files, SQLite, fake Apple over
// HTTP) driven only through payload files and the agent's API methods.

func TestE2EUpdateByNameKeyIDAndClientID(t *testing.T) {
	t.Parallel()
	h := newHarness(t).noSync()
	a := h.key("")
	entries := []payload.PayloadEntry{withID("add", h.entry("Acme", payload.IntentAdd, "", a, testPassphrase))}
	h.push(entries...)
	first := h.untilImport("add", store.ImportApplied)
	tenant := h.active("").TenantID
	if first.TenantID != tenant {
		t.Fatalf("add recorded tenant %q, active credential is in %q", first.TenantID, tenant)
	}

	steps := []struct {
		id, name string
		target   func(prev store.Credential) string
	}{
		{"by-name", "Acme", func(store.Credential) string { return "ACME" }},
		{"by-key-id", "Acme (key 3)", func(p store.Credential) string { return p.KeyID }},
		{"by-client-id", "Acme (key 4)", func(p store.Credential) string { return p.ClientID }},
	}
	for _, s := range steps {
		prev := h.active("")
		k := h.key(a.ClientID)
		entries = append(entries, withID(s.id, h.entry(s.name, payload.IntentUpdate, s.target(prev), k, testPassphrase)))
		h.push(entries...) // the earlier entries stay: applied imports are never applied again
		imp := h.untilImport(s.id, store.ImportApplied)
		now := h.active("")
		if now.KeyID != k.KeyID || now.TenantID != tenant || imp.TenantID != tenant || now.Name != s.name {
			t.Fatalf("%s: active %+v, import %+v; want key %s in tenant %s", s.id, now, imp, k.KeyID, tenant)
		}
		old, err := h.agent.Store().Credential(context.Background(), prev.ID)
		if err != nil || (old.State != store.CredPrevious && old.State != store.CredRetired) {
			t.Fatalf("%s: replaced credential is %+v, %v", s.id, old, err)
		}
		if n := len(h.tenants()); n != 1 {
			t.Fatalf("%s: %d tenants; an update must not create one", s.id, n)
		}
		h.healthy()
	}
	if got := h.imp("add"); got.State != store.ImportApplied || got.Attempts != 1 {
		t.Fatalf("the add import was attempted again: %+v", got)
	}
}

func TestE2EAutoInAllItsCases(t *testing.T) {
	t.Parallel()
	h := newHarness(t).noSync()
	alpha, beta := h.key(""), h.key("")

	// None with the Client ID → add; one → update.
	entries := []payload.PayloadEntry{
		withID("alpha", h.entry("Alpha", "", "", alpha, testPassphrase)),
		withID("beta", h.entry("Beta", payload.IntentAuto, "", beta, testPassphrase)),
	}
	h.push(entries...)
	h.untilImport("alpha", store.ImportApplied)
	h.untilImport("beta", store.ImportApplied)
	if n := len(h.tenants()); n != 2 {
		t.Fatalf("auto with no matching Client ID: %d tenants, want 2", n)
	}
	alphaTenant := h.activeByName("Alpha").TenantID
	a2 := h.key(alpha.ClientID)
	entries = append(entries, withID("alpha-2", h.entry("Alpha", "", "", a2, testPassphrase)))
	h.push(entries...)
	h.untilImport("alpha-2", store.ImportApplied)
	if c := h.activeByName("Alpha"); c.KeyID != a2.KeyID || c.TenantID != alphaTenant {
		t.Fatalf("auto with one matching Client ID did not update Alpha: %+v", c)
	}
	h.healthy()

	// A target wins over the Client ID: this Alpha key replaces Beta's.
	betaTenant := h.activeByName("Beta").TenantID
	x := h.key(alpha.ClientID)
	entries = append(entries, withID("to-beta", h.entry("Beta", "", "beta", x, testPassphrase)))
	h.push(entries...)
	h.untilImport("to-beta", store.ImportApplied)
	if c := h.activeByName("Beta"); c.KeyID != x.KeyID || c.TenantID != betaTenant {
		t.Fatalf("auto with a target did not update the target: %+v", c)
	}
	h.healthy()

	// Two active credentials now share Alpha's Client ID → needs-target.
	before := len(h.creds())
	y := h.key(alpha.ClientID)
	entries = append(entries, withID("several", h.entry("Alpha Y", "", "", y, testPassphrase)))
	h.push(entries...)
	h.untilImport("several", store.ImportNeedsTarget)
	if n := len(h.creds()); n != before {
		t.Fatalf("needs-target changed the credentials: %d, before %d", n, before)
	}
	if _, err := h.unlock("several", "", "", ""); !errors.Is(err, api.ErrNeedsChoice) {
		t.Fatalf("unlock without a choice: %v, want ErrNeedsChoice", err)
	}
	if _, err := h.unlock("several", "", payload.IntentUpdate, "nobody"); !errors.Is(err, api.ErrNeedsChoice) {
		t.Fatalf("unlock with an unknown target: %v, want ErrNeedsChoice", err)
	}
	if got := h.imp("several"); got.State != store.ImportNeedsTarget {
		t.Fatalf("a refused choice moved the import: %+v", got)
	}
	imp, err := h.unlock("several", "", payload.IntentUpdate, "alpha")
	if err != nil || imp.State != store.ImportApplied || imp.TenantID != alphaTenant {
		t.Fatalf("resolve needs-target by update: %+v, %v", imp, err)
	}
	if c := h.activeByName("Alpha Y"); c.KeyID != y.KeyID || c.TenantID != alphaTenant {
		t.Fatalf("needs-target resolved to Alpha, but Alpha's active is %+v", c)
	}
	h.healthy()

	// Another needs-target, resolved through add: a new tenant.
	z := h.key(alpha.ClientID)
	entries = append(entries, withID("several-2", h.entry("Gamma", "", "", z, testPassphrase)))
	h.push(entries...)
	h.untilImport("several-2", store.ImportNeedsTarget)
	imp, err = h.unlock("several-2", "", payload.IntentAdd, "")
	if err != nil || imp.State != store.ImportApplied {
		t.Fatalf("resolve needs-target by add: %+v, %v", imp, err)
	}
	if c := h.activeByName("Gamma"); c.KeyID != z.KeyID || c.TenantID == alphaTenant || c.TenantID == betaTenant {
		t.Fatalf("add did not make a new tenant: %+v", c)
	}
	if n := len(h.tenants()); n != 3 {
		t.Fatalf("%d tenants, want 3", n)
	}
	h.healthy()
}

func TestE2EUpdateNeverBecomesAnAdd(t *testing.T) {
	t.Parallel()
	h := newHarness(t).noSync()
	k, other := h.key(""), h.key("")
	h.push(
		withID("no-target", h.entry("Lonely", payload.IntentUpdate, "", k, testPassphrase)),
		withID("bad-target", h.entry("Lonely", payload.IntentUpdate, "Nobody", k, testPassphrase)),
	)
	h.untilImport("no-target", store.ImportNeedsTarget)
	h.untilImport("bad-target", store.ImportNeedsTarget)
	if n := len(h.creds()); n != 0 {
		t.Fatalf("an update with nothing to replace created %d credentials", n)
	}
	// With a tenant of another Client ID, an update still does not add.
	h.push(
		withID("no-target", h.entry("Lonely", payload.IntentUpdate, "", k, testPassphrase)),
		withID("bad-target", h.entry("Lonely", payload.IntentUpdate, "Nobody", k, testPassphrase)),
		withID("other", h.entry("Other", payload.IntentAdd, "", other, testPassphrase)),
		withID("no-target-2", h.entry("Lonely", payload.IntentUpdate, "", h.key(k.ClientID), testPassphrase)),
	)
	h.untilImport("other", store.ImportApplied)
	h.untilImport("no-target-2", store.ImportNeedsTarget)
	if n := len(h.tenants()); n != 1 {
		t.Fatalf("%d tenants, want only Other's", n)
	}
	h.healthy()
}

func TestE2EWrongPasswordThenRightOne(t *testing.T) {
	t.Parallel()
	h := newHarness(t).noSync()
	k := h.key("")
	h.push(withID("locked", h.entry("Locked", payload.IntentAdd, "", k, wrongPassphrase)))
	before := h.untilImport("locked", store.ImportPendingUnlock)

	if _, err := h.unlock("locked", "not it either", "", ""); !errors.Is(err, api.ErrWrongPassword) {
		t.Fatalf("unlock with a wrong password: %v, want ErrWrongPassword", err)
	}
	after := h.imp("locked")
	if after.State != store.ImportPendingUnlock || after.Attempts != before.Attempts || len(h.creds()) != 0 {
		t.Fatalf("a wrong password changed something: %+v, %d credentials", after, len(h.creds()))
	}
	imp, err := h.unlock("locked", wrongPassphrase, "", "")
	if err != nil || imp.State != store.ImportApplied {
		t.Fatalf("unlock with the right password: %+v, %v", imp, err)
	}
	if c := h.active(""); c.KeyID != k.KeyID {
		t.Fatalf("active after unlock: %+v", c)
	}
	h.leaksNothing(wrongPassphrase, "not it either", testPassphrase, string(k.PEM))
	h.healthy()
}

func TestE2EAuthCheckRequiredRetriesWhileAppleIsUnreachable(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *agent.Config) {
		c.Backoff = func(int) time.Duration { return 20 * time.Millisecond }
	}).noSync()
	h.settings[payload.KeyAuthCheck] = payload.AuthRequired
	// A malformed answer counts as unreachable and, unlike a 503, is not
	// retried inside the Apple client (whose 5xx backoff takes seconds).
	h.apple.Fail(appletest.Fault{Endpoint: appletest.TokenEndpoint, Mode: appletest.Malformed, Times: -1})
	k := h.key("")
	h.push(withID("req", h.entry("Required", payload.IntentAdd, "", k, testPassphrase)))
	failed := h.untilImport("req", store.ImportFailed)
	if n := len(h.creds()); n != 0 {
		t.Fatalf("a required check that could not run created %d credentials (%s)", n, failed.Reason)
	}
	h.apple.ClearFaults()
	imp := h.untilImport("req", store.ImportApplied)
	if imp.Attempts < 2 {
		t.Fatalf("applied after %d attempts; want a retry", imp.Attempts)
	}
	if c := h.active(""); c.KeyID != k.KeyID {
		t.Fatalf("active after the retry: %+v", c)
	}
	h.until("the token recorded", func() bool { return !h.active("").LastAuthAt.IsZero() })
	h.healthy()
}

func TestE2EAlreadyPresent(t *testing.T) {
	t.Parallel()
	h := newHarness(t).noSync()
	k := h.key("")
	entries := []payload.PayloadEntry{withID("first", h.entry("Acme", payload.IntentAdd, "", k, testPassphrase))}
	h.push(entries...)
	h.untilImport("first", store.ImportApplied)
	// The same key pushed again, re-sealed, under every intent.
	entries = append(entries,
		withID("again-add", h.entry("Acme", payload.IntentAdd, "", k, testPassphrase)),
		withID("again-auto", h.entry("Acme again", "", "", k, testPassphrase)),
		withID("again-update", h.entry("Acme", payload.IntentUpdate, "acme", k, testPassphrase)),
	)
	h.push(entries...)
	for _, id := range []string{"again-add", "again-auto", "again-update"} {
		imp := h.untilImport(id, store.ImportAlreadyPresent)
		if imp.TenantID != h.active("").TenantID {
			t.Fatalf("%s: already-present without the tenant: %+v", id, imp)
		}
	}
	if cs := h.creds(); len(cs) != 1 {
		t.Fatalf("re-pushing a key made %d credentials", len(cs))
	}
	h.healthy()
}

func TestE2ESuperseded(t *testing.T) {
	t.Parallel()
	h := newHarness(t).noSync()
	a := h.key("")
	entries := []payload.PayloadEntry{withID("add", h.entry("Acme", payload.IntentAdd, "", a, testPassphrase))}
	h.push(entries...)
	h.untilImport("add", store.ImportApplied)

	// An older update waits for a password while a newer one is applied.
	older, newer := h.key(a.ClientID), h.key(a.ClientID)
	entries = append(entries, withID("older", h.entry("Acme", payload.IntentUpdate, "", older, wrongPassphrase)))
	h.push(entries...)
	h.untilImport("older", store.ImportPendingUnlock)
	entries = append(entries, withID("newer", h.entry("Acme", payload.IntentUpdate, "", newer, testPassphrase)))
	h.push(entries...)
	h.untilImport("newer", store.ImportApplied)

	imp, err := h.unlock("older", wrongPassphrase, "", "")
	if err != nil || imp.State != store.ImportSuperseded {
		t.Fatalf("unlocking the older update: %+v, %v; want superseded", imp, err)
	}
	if c := h.active(""); c.KeyID != newer.KeyID {
		t.Fatalf("the older update replaced the newer key: %+v", c)
	}

	// A failed older update is superseded as soon as a newer one is applied.
	rejected := h.key(a.ClientID)
	h.apple.RegisterCredential(rejected.ClientID, newer.KeyID, &newer.Private.PublicKey) // Apple knows newer only
	entries = append(entries, withID("rejected", h.entry("Acme", payload.IntentUpdate, "", rejected, testPassphrase)))
	h.push(entries...)
	h.untilImport("rejected", store.ImportFailed)
	latest := h.key(a.ClientID)
	entries = append(entries, withID("latest", h.entry("Acme", payload.IntentUpdate, "", latest, testPassphrase)))
	h.push(entries...)
	h.untilImport("latest", store.ImportApplied)
	h.untilImport("rejected", store.ImportSuperseded)
	if c := h.active(""); c.KeyID != latest.KeyID {
		t.Fatalf("active: %+v", c)
	}
	h.healthy()
}

// A stop that arrives while the agent is still starting (recovering) is a
// normal stop, not a failure.
func TestE2EStopDuringStartIsClean(t *testing.T) {
	t.Parallel()
	h := newHarness(t).noSync()
	h.stop()
	a, err := agent.New(h.config())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Run(ctx); err != nil {
		t.Fatalf("run with an ended context: %v", err)
	}
	if problems, err := a.Store().Check(context.Background(), time.Hour); err != nil || len(problems) > 0 {
		t.Fatalf("store check: %v %+v", err, problems)
	}
}
