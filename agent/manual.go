package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// ManualSource is the Source of the import that records a manual rotation
// or add: it has no payload entry, so it is never withdrawn or retried from one.
const ManualSource = "manual"

// manualCredential checks a typed-in credential with the rules a decrypted
// payload meets and returns it parsed. The caller wipes it.
func manualCredential(req api.CredentialRequest) (*payload.Credential, error) {
	in := payload.SealInput{Name: req.Name, ClientID: req.ClientID, KeyID: req.KeyID, KeyPEM: req.PrivateKey}
	scope, pem, err := in.Check()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", api.ErrInvalid, err)
	}
	key, err := payload.ParsePrivateKey(pem)
	if err != nil {
		clear(pem)
		return nil, fmt.Errorf("%w: %w", api.ErrInvalid, err)
	}
	return &payload.Credential{Name: req.Name, ClientID: req.ClientID, KeyID: req.KeyID, Scope: scope, Key: key, PEM: pem}, nil
}

// recordManual records the import that stands for a manual request, so
// that the rotation journal, the events and 'rekey imports' show it like
// any other. Its id is random; its hash names nothing secret.
func (a *Agent) recordManual(ctx context.Context, intent, target string, cred *payload.Credential) (store.Import, error) {
	b := make([]byte, 8)
	rand.Read(b)
	id := "manual-" + hex.EncodeToString(b)
	sum := sha256.Sum256([]byte(id + "\x00" + cred.ClientID + "\x00" + cred.KeyID))
	imp, _, err := a.st.RecordImport(ctx, store.Import{ID: id, Hash: hex.EncodeToString(sum[:]), Source: ManualSource,
		Name: cred.Name, Intent: intent, Target: target, State: store.ImportApplying, ClientID: cred.ClientID, KeyID: cred.KeyID})
	if err != nil {
		return imp, storeErr(err)
	}
	a.publish(ctx, store.Event{Kind: store.EvImportRecorded, ImportID: imp.ID,
		Message: fmt.Sprintf("manual %s of %q recorded", intent, imp.Name)})
	return imp, nil
}

// manualSettings are the settings a manual operation on ten runs under: the
// tenant's endpoints, the given auth-check policy, the payload's sync interval.
func (a *Agent) manualSettings(ten store.Tenant, authCheck string) payload.Settings {
	set := a.syncs.settings()
	set.AuthCheck = authCheck
	set.TokenURL, set.APIBaseURL = a.syncs.endpoints(ten)
	return set
}

// Rotate replaces a tenant's active credential with one typed in by a
// person, through rotate: the same staged → validated → cutover → confirmed
// steps as a payload update.
func (a *Agent) Rotate(ctx context.Context, tenantID string, req api.CredentialRequest) (api.RotationAnswer, error) {
	ctx = context.WithoutCancel(ctx) // a step once begun is finished
	cred, err := manualCredential(req)
	if err != nil {
		return api.RotationAnswer{}, err
	}
	defer cred.Wipe()
	a.mu.Lock()
	defer a.mu.Unlock()
	ten, err := a.st.Tenant(ctx, tenantID)
	if err != nil {
		return api.RotationAnswer{}, err
	}
	if cred.Scope != ten.Scope {
		return api.RotationAnswer{}, fmt.Errorf("%w: the Client ID is of scope %s but tenant %q is %s; a credential replaces only one of its own scope",
			api.ErrInvalid, cred.Scope, ten.Name, ten.Scope)
	}
	target, err := a.activeOf(ctx, ten.ID)
	if err != nil {
		return api.RotationAnswer{}, err
	}
	if target.ClientID == cred.ClientID && target.KeyID == cred.KeyID {
		return api.RotationAnswer{}, fmt.Errorf("tenant %q already uses this Client ID and Key ID (credential %q): %w", ten.Name, target.Name, store.ErrState)
	}
	imp, err := a.recordManual(ctx, payload.IntentUpdate, target.ID, cred)
	if err != nil {
		return api.RotationAnswer{}, err
	}
	w := &waiting{settings: a.manualSettings(ten, req.AuthCheck), source: ManualSource, manual: true}
	withExtraSlot(func() { err = a.rotate(ctx, imp, w, cred, target) })
	if err != nil {
		return api.RotationAnswer{}, err
	}
	imp, err = a.settled(ctx, imp.ID)
	if err != nil {
		return api.RotationAnswer{}, err
	}
	rot, err := a.st.CurrentRotation(ctx, ten.ID)
	if err != nil {
		return api.RotationAnswer{}, err
	}
	return api.RotationAnswer{Rotation: rot, Import: imp}, nil
}

// Add adds a credential typed in by a person as the active one of a new
// tenant, through add, as a payload add does.
func (a *Agent) Add(ctx context.Context, req api.CredentialRequest) (api.AddAnswer, error) {
	ctx = context.WithoutCancel(ctx)
	for _, u := range []string{req.TokenURL, req.APIBaseURL} {
		if u == "" {
			continue
		}
		if err := payload.CheckURL(u); err != nil {
			return api.AddAnswer{}, fmt.Errorf("%w: endpoint: %w; use an https:// URL (http:// only for localhost)", api.ErrInvalid, err)
		}
	}
	cred, err := manualCredential(req)
	if err != nil {
		return api.AddAnswer{}, err
	}
	defer cred.Wipe()
	a.mu.Lock()
	defer a.mu.Unlock()
	creds, err := a.st.Credentials(ctx)
	if err != nil {
		return api.AddAnswer{}, err
	}
	if d := Decide(payload.IntentAdd, "", Identity{ClientID: cred.ClientID, KeyID: cred.KeyID}, creds); d.Action != ActionAdd {
		return api.AddAnswer{}, fmt.Errorf("%s: %w", d.Reason, store.ErrState)
	}
	if err := a.nameFree(ctx, cred.Name); err != nil {
		return api.AddAnswer{}, err
	}
	imp, err := a.recordManual(ctx, payload.IntentAdd, "", cred)
	if err != nil {
		return api.AddAnswer{}, err
	}
	tokenURL := req.TokenURL
	if tokenURL == "" {
		tokenURL = apple.DefaultTokenURL
	}
	set := a.manualSettings(store.Tenant{TokenURL: tokenURL, APIBaseURL: req.APIBaseURL}, req.AuthCheck)
	set.APIBaseURL = req.APIBaseURL // "" is Apple's for the scope, not the payload's
	w := &waiting{settings: set, source: ManualSource, manual: true}
	if err := a.add(ctx, imp, w, cred); err != nil {
		return api.AddAnswer{}, err
	}
	if imp, err = a.settled(ctx, imp.ID); err != nil {
		return api.AddAnswer{}, err
	}
	c, err := a.st.Credential(ctx, imp.CredentialID)
	if err != nil {
		return api.AddAnswer{}, err
	}
	ten, err := a.st.Tenant(ctx, c.TenantID)
	if err != nil {
		return api.AddAnswer{}, err
	}
	return api.AddAnswer{Tenant: ten, Credential: c, Import: imp}, nil
}

// settled reads the import a manual operation or a retry ran: applied is
// success; failed is ErrNotApplied with the import's reason.
func (a *Agent) settled(ctx context.Context, id string) (store.Import, error) {
	imp, err := a.st.Import(ctx, id)
	if err != nil {
		return imp, err
	}
	switch imp.State {
	case store.ImportApplied:
		return imp, nil
	case store.ImportPendingUnlock:
		return imp, fmt.Errorf("%w: %s", api.ErrPasswordRequired, imp.Reason)
	}
	return imp, fmt.Errorf("%w: %s", api.ErrNotApplied, imp.Reason)
}

// activeOf returns the tenant's active credential.
func (a *Agent) activeOf(ctx context.Context, tenantID string) (store.Credential, error) {
	creds, err := a.st.Credentials(ctx)
	if err != nil {
		return store.Credential{}, err
	}
	for _, c := range creds {
		if c.TenantID == tenantID && c.State == store.CredActive {
			return c, nil
		}
	}
	return store.Credential{}, fmt.Errorf("tenant %s has no active credential: %w", tenantID, store.ErrNotFound)
}

// Retry attempts a failed import again from its payload entry, at once,
// whatever its backoff says.
func (a *Agent) Retry(ctx context.Context, id string) (store.Import, error) {
	ctx = context.WithoutCancel(ctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	imp, err := a.st.Import(ctx, id)
	if err != nil {
		return imp, err
	}
	if imp.State != store.ImportFailed {
		return imp, fmt.Errorf("import %s is %s; only a failed import is retried ('rekey unlock' opens a locked one): %w", id, imp.State, store.ErrState)
	}
	w := a.waiting[id]
	switch {
	case imp.Source == ManualSource:
		return imp, fmt.Errorf("import %s was a manual request and has no payload entry; run 'rekey rotate' or 'rekey add' again with the corrected credential: %w", id, store.ErrState)
	case w == nil:
		return imp, fmt.Errorf("import %s: its entry is no longer in the managed preferences; push the payload again: %w", id, store.ErrState)
	}
	w.nextTry = a.cfg.Now()
	err = a.attempt(ctx, id, attemptInput{})
	if errors.Is(err, errStore) {
		return imp, err
	}
	imp, serr := a.st.Import(ctx, id)
	if serr != nil {
		return imp, serr
	}
	switch imp.State {
	case store.ImportFailed:
		return imp, fmt.Errorf("%w: %s", api.ErrNotApplied, imp.Reason)
	case store.ImportPendingUnlock:
		return imp, fmt.Errorf("%w: %s", api.ErrPasswordRequired, imp.Reason)
	}
	return imp, nil
}

// Check exchanges a credential for a token now. An accepted exchange is
// recorded (and confirms a rotation that waited for it, when the credential
// is its tenant's active one).
func (a *Agent) Check(ctx context.Context, credentialID string) (api.CheckAnswer, error) {
	c, err := a.st.Credential(ctx, credentialID)
	if err != nil {
		return api.CheckAnswer{}, err
	}
	ten, err := a.st.Tenant(ctx, c.TenantID)
	if err != nil {
		return api.CheckAnswer{}, err
	}
	target, err := a.syncs.targetOf(ctx, ten, c)
	if err != nil {
		return api.CheckAnswer{}, fmt.Errorf("credential %q is %s and cannot be checked (%v); check its tenant's active credential: %w", c.Name, c.State, err, store.ErrState)
	}
	res := a.cfg.Checker.Check(ctx, target)
	target.Key = nil
	ans := api.CheckAnswer{CredentialID: c.ID, Name: c.Name, ClientID: c.ClientID, KeyID: c.KeyID,
		Outcome: string(outcome(res)), Reason: res.Reason, CheckedAt: a.cfg.Now(), LastAuthAt: c.LastAuthAt,
		AppleErrorID: res.ErrorID}
	if res.ClockSkew != 0 {
		ans.ClockSkew = res.ClockSkew.String()
	}
	a.publish(ctx, store.Event{Kind: store.EvAuthCheck, TenantID: c.TenantID, CredentialID: c.ID, Message: "auth check: " + checkText(res),
		Fields: checkFields(res, map[string]string{"client_id": c.ClientID, "key_id": c.KeyID, "outcome": ans.Outcome, "trigger": "check"})})
	if outcome(res) == apple.Accepted {
		ctx := context.WithoutCancel(ctx)
		if c.State == store.CredActive {
			a.confirmed(ctx, c.TenantID, c.ID)
		} else {
			a.markAuth(ctx, c.ID)
		}
		if now, err := a.st.Credential(ctx, c.ID); err == nil {
			ans.LastAuthAt = now.LastAuthAt
		}
	}
	return ans, nil
}

// nameFree refuses a manual add whose name a tenant has already: names are
// how people pick a tenant (`rekey rotate NAME`), and two alike would make
// every later command ask for an id. A payload's add is not refused here
// (there is no one to answer); its tenant then shares the name.
func (a *Agent) nameFree(ctx context.Context, name string) error {
	tenants, err := a.st.Tenants(ctx)
	if err != nil {
		return err
	}
	for _, t := range tenants {
		if strings.EqualFold(t.Name, name) {
			return fmt.Errorf("a tenant named %q exists already (%s): to replace its credential run `rekey rotate %s`, "+
				"or give the new tenant another name: %w", t.Name, t.ID, t.ID, store.ErrState)
		}
	}
	return nil
}
