package agent_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// typed is k as a person types it into a manual rotation or add.
func typed(name string, k appletest.Key, authCheck string) api.CredentialRequest {
	return api.CredentialRequest{Name: name, ClientID: k.ClientID, KeyID: k.KeyID, PrivateKey: api.Secret(k.PEM), AuthCheck: authCheck}
}

// syncedTenant adds a tenant through a payload and waits for its first sync.
func syncedTenant(h *harness, name string) (store.Tenant, store.Credential, appletest.Key) {
	h.t.Helper()
	k := h.key("")
	e := withID("add-"+name, h.entry(name, payload.IntentAdd, "", k, testPassphrase))
	h.push(e)
	h.waitImport(e.ImportID, store.ImportApplied)
	h.waitFor("first sync", func(ev store.Event) bool { return ev.Kind == store.EvSyncFinished })
	c := h.activeByName(name)
	ten, err := h.agent.Store().Tenant(context.Background(), c.TenantID)
	if err != nil {
		h.t.Fatal(err)
	}
	return ten, c, k
}

// counts reads a tenant's device and coverage counts.
func (h *harness) counts(tenantID string) [2]int {
	h.t.Helper()
	d, c, err := h.agent.Store().Counts(context.Background(), tenantID)
	if err != nil || d == 0 || c == 0 {
		h.t.Fatalf("tenant %s holds %d devices and %d coverage records (%v); want some of each", tenantID, d, c, err)
	}
	return [2]int{d, c}
}

func (h *harness) cred(id string) store.Credential {
	h.t.Helper()
	c, err := h.agent.Store().Credential(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

func TestManualRotationKeepsTheTenantsDataAndRetiresTheOldCredential(t *testing.T) {
	h := newHarness(t)
	client := waitAPI(t, h.socket)
	ctx := context.Background()
	ten, old, k := syncedTenant(h, "Acme")
	before := h.counts(ten.ID)

	next := h.key(k.ClientID)
	ans, err := client.Rotate(ctx, ten.ID, typed("Acme 2027", next, api.AuthOff))
	if err != nil {
		t.Fatalf("manual rotation: %v", err)
	}
	if ans.Rotation.Step != store.StepCutover || ans.Rotation.FromCredentialID != old.ID || ans.Import.State != store.ImportApplied ||
		ans.Import.Source != agent.ManualSource {
		t.Fatalf("answer: %+v", ans)
	}
	if got := h.cred(old.ID); got.State != store.CredPrevious || !got.HasKey {
		t.Fatalf("old credential after cut-over without a check: %s (key kept %v), want previous with its key", got.State, got.HasKey)
	}
	now := h.cred(ans.Rotation.ToCredentialID)
	if now.State != store.CredActive || now.Origin != store.OriginLocal || now.Name != "Acme 2027" || now.TenantID != ten.ID {
		t.Fatalf("new credential: %+v", now)
	}
	if after := h.counts(ten.ID); after != before {
		t.Fatalf("devices and coverage %v before, %v after the rotation", before, after)
	}

	chk, err := client.Check(ctx, now.ID)
	if err != nil || chk.Outcome != "accepted" || chk.LastAuthAt.IsZero() {
		t.Fatalf("check of the new credential: %+v, %v", chk, err)
	}
	if got := h.cred(old.ID); got.State != store.CredRetired || got.HasKey {
		t.Fatalf("old credential after an accepted check: %s (key kept %v), want retired and wiped", got.State, got.HasKey)
	}
	st, err := client.Status(ctx)
	if err != nil || len(st.Tenants) != 1 || st.Tenants[0].Active.ID != now.ID || st.Tenants[0].Active.LastAuth.IsZero() || st.Tenants[0].Previous != nil {
		t.Fatalf("status after the check: %+v, %v; want the new credential active with its last check", st.Tenants, err)
	}
	if after := h.counts(ten.ID); after != before {
		t.Fatalf("devices and coverage %v before, %v after the confirmation", before, after)
	}
	h.healthy()
}

func TestManualRotationToARejectedKeyChangesNothingAndACorrectedOneSucceeds(t *testing.T) {
	h := newHarness(t)
	client := waitAPI(t, h.socket)
	ctx := context.Background()
	ten, old, k := syncedTenant(h, "Acme")
	before := h.counts(ten.ID)
	credsBefore := len(h.creds())

	unknown, err := appletest.GenerateKey(k.ClientID) // Apple does not know this key
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.Rotate(ctx, ten.ID, typed("Acme typo", unknown, ""))
	if !errors.Is(err, api.ErrNotApplied) || !strings.Contains(err.Error(), "rejected") {
		t.Fatalf("rotation to a key Apple rejects: %v, want not_applied naming the rejection", err)
	}
	if got := h.active(ten.ID); got.ID != old.ID {
		t.Fatalf("active credential changed to %s after a failed rotation", got.ID)
	}
	for _, c := range h.creds() {
		if c.ID != old.ID && (c.State != store.CredFailed || c.HasKey) {
			t.Fatalf("the rejected credential is %s (key kept %v), want failed and wiped", c.State, c.HasKey)
		}
	}
	if len(h.creds()) != credsBefore+1 || h.counts(ten.ID) != before {
		t.Fatalf("a failed rotation changed the tenant: %d credentials, counts %v (before %v)", len(h.creds()), h.counts(ten.ID), before)
	}
	school, err := appletest.GenerateKey("SCHOOLAPI.0a5f8a8e-3f4b-4d7c-9b1e-2c6d7e8f9a0b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Rotate(ctx, ten.ID, typed("Acme school", school, "")); !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "scope") {
		t.Fatalf("rotation to a School credential of a Business tenant: %v, want invalid_request naming the scope", err)
	}
	bad := typed("Acme", k, "")
	bad.PrivateKey = api.Secret("-----BEGIN EC PRIVATE KEY-----\nnot a key\n-----END EC PRIVATE KEY-----\n")
	if _, err := client.Rotate(ctx, ten.ID, bad); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("rotation to a key that does not parse: %v, want invalid_request", err)
	}

	fixed := h.key(k.ClientID)
	ans, err := client.Rotate(ctx, ten.ID, typed("Acme 2027", fixed, ""))
	if err != nil {
		t.Fatalf("rotation with the corrected key: %v", err)
	}
	if ans.Rotation.Step != store.StepConfirmed {
		t.Fatalf("a required check that got a token confirms at once; rotation is %s", ans.Rotation.Step)
	}
	if got := h.cred(old.ID); got.State != store.CredRetired || got.HasKey {
		t.Fatalf("old credential: %s (key kept %v), want retired and wiped", got.State, got.HasKey)
	}
	if h.counts(ten.ID) != before {
		t.Fatal("the corrected rotation changed the tenant's devices or coverage")
	}
	for _, imp := range h.imports() {
		if imp.Source == agent.ManualSource && imp.State == store.ImportFailed {
			t.Errorf("the failed manual import %s still waits after the corrected rotation", imp.ID)
		}
	}
	h.healthy()
}

func (h *harness) imports() []store.Import {
	h.t.Helper()
	imps, err := h.agent.Store().Imports(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return imps
}

func TestManualAddCreatesATenantThatSyncs(t *testing.T) {
	h := newHarness(t)
	client := waitAPI(t, h.socket)
	ctx := context.Background()
	k := h.key("")
	req := typed("Globex", k, "")
	req.TokenURL, req.APIBaseURL = h.apple.TokenURL(), h.apple.APIBaseURL()
	ans, err := client.Add(ctx, req)
	if err != nil {
		t.Fatalf("add: %v", err)
	}
	if ans.Tenant.TokenURL != req.TokenURL || ans.Credential.State != store.CredActive || ans.Credential.Origin != store.OriginLocal ||
		ans.Import.State != store.ImportApplied {
		t.Fatalf("add answer: %+v", ans)
	}
	h.waitFor("the new tenant's sync", func(e store.Event) bool { return e.Kind == store.EvSyncFinished && e.TenantID == ans.Tenant.ID })
	if got := h.counts(ans.Tenant.ID); got[0] != 25 {
		t.Fatalf("the added tenant synced %d devices, want 25", got[0])
	}
	if _, err := client.Add(ctx, req); !errors.Is(err, store.ErrState) {
		t.Fatalf("adding the same key again: %v, want conflict", err)
	}
	// Another key under a name a tenant has: refused, nothing created.
	other := typed("globex", h.key(""), api.AuthOff)
	other.TokenURL, other.APIBaseURL = h.apple.TokenURL(), h.apple.APIBaseURL()
	if _, err := client.Add(ctx, other); !errors.Is(err, store.ErrState) || !strings.Contains(err.Error(), "rekey rotate "+ans.Tenant.ID) {
		t.Fatalf("adding under an existing tenant's name: %v, want conflict naming rekey rotate", err)
	}
	if n := len(h.tenants()); n != 1 {
		t.Fatalf("%d tenants after the refused add, want 1", n)
	}
	req.Name, req.TokenURL = "Elsewhere", "http://example.com/token"
	if _, err := client.Add(ctx, req); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("add with a plain-http token URL off localhost: %v, want invalid_request", err)
	}
	h.healthy()
}

func TestCheckReportsEachOutcome(t *testing.T) {
	h := newHarness(t, instantRetries)
	client := waitAPI(t, h.socket)
	ctx := context.Background()
	add := func(name string, k appletest.Key, tokenURL string) store.Credential {
		t.Helper()
		req := typed(name, k, api.AuthOff)
		req.TokenURL, req.APIBaseURL = tokenURL, h.apple.APIBaseURL()
		ans, err := client.Add(ctx, req)
		if err != nil {
			t.Fatalf("add %s: %v", name, err)
		}
		return ans.Credential
	}
	unknown, err := appletest.GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	accepted := add("Accepted", h.key(""), h.apple.TokenURL())
	rejected := add("Rejected", unknown, h.apple.TokenURL())
	unreachable := add("Unreachable", h.key(""), "http://127.0.0.1:1/token")
	for _, tc := range []struct {
		cred    store.Credential
		outcome string
	}{{accepted, "accepted"}, {rejected, "rejected"}, {unreachable, "unreachable"}} {
		ans, err := client.Check(ctx, tc.cred.ID)
		if err != nil || ans.Outcome != tc.outcome || ans.Reason == "" || ans.CredentialID != tc.cred.ID {
			t.Errorf("check %s: %+v, %v; want %s with a reason", tc.cred.Name, ans, err, tc.outcome)
		}
		if got := h.cred(tc.cred.ID); got.LastAuthAt.IsZero() != (tc.outcome != "accepted") {
			t.Errorf("check %s (%s) recorded last auth %v", tc.cred.Name, tc.outcome, got.LastAuthAt)
		}
	}
	if _, err := client.Check(ctx, "cred_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("check of a missing credential: %v, want not_found", err)
	}
}

func TestRetryReappliesAFailedImportOnceAppleAcceptsItsKey(t *testing.T) {
	h := newHarness(t, noRetries)
	h.settings[payload.KeyAuthCheck] = payload.AuthRequired
	client := waitAPI(t, h.socket)
	ctx := context.Background()
	k, err := appletest.GenerateKey("") // not active at Apple yet
	if err != nil {
		t.Fatal(err)
	}
	e := withID("early", h.entry("Initech", payload.IntentAdd, "", k, testPassphrase))
	h.push(e)
	failed := h.waitImport(e.ImportID, store.ImportFailed)
	if !strings.Contains(failed.Reason, "rejected") {
		t.Fatalf("import failed for %q, want Apple's rejection", failed.Reason)
	}
	if _, err := client.Retry(ctx, e.ImportID); !errors.Is(err, api.ErrNotApplied) {
		t.Fatalf("retry while Apple still rejects the key: %v, want not_applied", err)
	}
	h.apple.RegisterCredential(k.ClientID, k.KeyID, &k.Private.PublicKey)
	imp, err := client.Retry(ctx, e.ImportID)
	if err != nil || imp.State != store.ImportApplied {
		t.Fatalf("retry once Apple accepts the key: %+v, %v", imp, err)
	}
	if _, err := client.Retry(ctx, e.ImportID); !errors.Is(err, store.ErrState) {
		t.Fatalf("retry of an applied import: %v, want conflict", err)
	}
	h.activeByName("Initech")
	h.healthy()
}

func TestAPayloadUpdateOfAManuallyAddedTenantMakesItFollowThePayload(t *testing.T) {
	h := newHarness(t)
	client := waitAPI(t, h.socket)
	k := h.key("")
	req := typed("Globex", k, "")
	req.TokenURL, req.APIBaseURL = h.apple.TokenURL(), h.apple.APIBaseURL()
	ans, err := client.Add(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	next := h.key(k.ClientID)
	e := withID("globex-2027", h.entry("Globex 2027", payload.IntentUpdate, "Globex", next, testPassphrase))
	h.push(e)
	h.waitImport(e.ImportID, store.ImportApplied)
	// The endpoints are cleared after the cut-over is announced; the sync
	// the cut-over schedules follows.
	h.until("the tenant to follow the payload", func() bool {
		ten, err := h.agent.Store().Tenant(context.Background(), ans.Tenant.ID)
		return err == nil && ten.TokenURL == "" && ten.APIBaseURL == ""
	})
	ten, err := h.agent.Store().Tenant(context.Background(), ans.Tenant.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c := h.active(ten.ID); c.KeyID != next.KeyID || c.Origin != store.OriginManaged {
		t.Fatalf("active credential: %+v", c)
	}
}
