package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// crashHook, when set, is called at every recorded step of an import and a
// rotation, and for every device whose coverage a sync stored. Only tests set it (to kill the process at that instant); the
// production binary has no way to arm it.
var crashHook func(point string)

func crashPoint(point string) {
	if crashHook != nil {
		crashHook(point)
	}
}

// verdict is what the auth check of a new credential decided.
type verdict struct {
	ok        bool   // go on with the import
	confirmed bool   // the new credential got a token, which confirms it
	reason    string // when not ok: why
	transient bool   // when not ok: the failure may pass by itself
	// event is the auth.check event to record (nil when the check is
	// off): the caller records it with its next step, or publishes it.
	event []store.Event
}

// gate runs the auth check for a new credential under the import's
// AuthCheck policy.
func (a *Agent) gate(ctx context.Context, w *waiting, cred *payload.Credential) verdict {
	policy := w.settings.AuthCheck
	if policy == payload.AuthOff {
		return verdict{ok: true}
	}
	res := a.cfg.Checker.Check(ctx, authTarget(w.settings, cred))
	ev := []store.Event{{Kind: store.EvAuthCheck, Time: a.cfg.Now(), Message: "auth check: " + checkText(res),
		Fields: checkFields(res, map[string]string{"client_id": cred.ClientID, "key_id": cred.KeyID,
			"outcome": string(outcome(res)), "policy": policy})}}
	switch outcome(res) {
	case apple.Accepted:
		return verdict{ok: true, confirmed: true, event: ev}
	case apple.Rejected:
		return verdict{reason: "the token endpoint rejected the new credential: " + res.Reason, event: ev}
	default: // Unreachable
		if policy == payload.AuthRequired {
			return verdict{reason: "auth check required but the token endpoint is unreachable: " + res.Reason, transient: true, event: ev}
		}
		return verdict{ok: true, event: ev}
	}
}

// publishCheck publishes the auth.check event of v on its own.
func (a *Agent) publishCheck(ctx context.Context, v verdict) {
	for _, ev := range v.event {
		a.publish(ctx, ev)
	}
}

// checkFields adds to fields what a check result says beyond its outcome:
// Apple's error id and a clock found off.
func checkFields(res apple.CheckResult, fields map[string]string) map[string]string {
	if res.ErrorID != "" {
		fields["apple_error_id"] = res.ErrorID
	}
	if res.ClockSkew != 0 {
		fields["clock_skew"] = res.ClockSkew.String()
	}
	return fields
}

// add creates a new tenant with the credential as its active one.
func (a *Agent) add(ctx context.Context, imp store.Import, w *waiting, cred *payload.Credential) error {
	a.setImport(ctx, imp.ID, store.ImportApplying, "adding a new credential", "")
	crashPoint("import.applying")
	v := a.gate(ctx, w, cred)
	a.publishCheck(ctx, v)
	if !v.ok {
		a.failImport(ctx, imp.ID, v.reason, v.transient)
		return nil
	}
	nc := newCredential(imp, cred, w)
	ten, c, added, err := a.st.AddCredential(ctx, nc, nc.Name)
	if err != nil {
		a.failImport(ctx, imp.ID, "store the new credential: "+err.Error(), true)
		return fmt.Errorf("add credential: %w", err)
	}
	crashPoint("add.committed")
	delete(a.waiting, imp.ID)
	if v.confirmed {
		a.markAuth(ctx, c.ID)
	}
	for _, ev := range added {
		a.announce(ev) // credential.added, the import applied
	}
	a.syncs.schedule(ten.ID)
	return nil
}

// rotate replaces target with cred: staged → validated → cutover →
// confirmed, each step recorded before the next begins. With the auth check
// off nothing happens between staging and validation, so the three steps
// share one transaction; otherwise the check runs on the staged credential
// and validation and cut-over share one (docs/store.md, "Joined steps").
func (a *Agent) rotate(ctx context.Context, imp store.Import, w *waiting, cred *payload.Credential, target store.Credential) error {
	if newer, ok := a.newerApplied(ctx, imp, target.TenantID); ok {
		delete(a.waiting, imp.ID)
		reason := "import " + newer + " for the same tenant was applied first"
		if err := a.dropLeftovers(ctx, imp.ID, "", reason); err != nil {
			return err
		}
		a.setImport(ctx, imp.ID, store.ImportSuperseded, reason, target.TenantID)
		return nil
	}
	kept, err := a.leftover(ctx, imp.ID, target.TenantID, cred, w.settings.AuthCheck != payload.AuthOff)
	if err != nil {
		return err
	}
	nc := newCredential(imp, cred, w)
	var v verdict
	var pending store.Credential
	if w.settings.AuthCheck == payload.AuthOff {
		_, _, evs, err := a.st.StageAndCutover(ctx, target.TenantID, nc)
		if err != nil {
			return a.stageFailed(ctx, imp.ID, cred, err)
		}
		a.st.FinishWipes(ctx) // a key the cut-over retired leaves the WAL before it is announced
		a.announceAll(evs)    // staged, validated, cutover, the import applied
		crashPoint(string(store.EvRotationCutover))
	} else {
		rot, staged := kept.rot, kept.cred
		if rot.ID == "" {
			var ev store.Event
			if rot, staged, ev, err = a.st.Stage(ctx, target.TenantID, nc); err != nil {
				return a.stageFailed(ctx, imp.ID, cred, err)
			}
			a.announce(ev)
			crashPoint(string(store.EvRotationStaged))
		} else if _, err := a.countAttempt(ctx, imp.ID, cred); err != nil {
			return err // staging counts an attempt in its transaction; taking one up again counts here
		}
		pending = staged
		if v = a.gate(ctx, w, cred); !v.ok {
			a.publishCheck(ctx, v)
			if v.transient && !w.manual {
				// Apple could not be asked (a network failure, a clock far
				// off): nothing says the key is bad, so it stays staged and
				// the retry checks it again (docs/agent.md).
				a.failImport(ctx, imp.ID, v.reason+"; the staged credential is kept and checked again at the retry", true)
				return nil
			}
			failed, err := a.st.FailRotation(ctx, rot.ID, v.reason)
			if err != nil {
				return storeErr(err)
			}
			a.announce(failed)
			a.failImport(ctx, imp.ID, v.reason, v.transient)
			return nil
		}
		evs, err := a.st.ValidateAndCutover(ctx, rot.ID, v.event...)
		if err != nil {
			a.publishCheck(ctx, v)
			return storeErr(err)
		}
		a.st.FinishWipes(ctx) // a key the cut-over retired leaves the WAL before it is announced
		a.announceAll(evs)    // the auth check, validated, cutover, the import applied
		crashPoint(string(store.EvRotationCutover))
	}
	if !w.manual {
		a.followPayload(ctx, target.TenantID)
	}
	delete(a.waiting, imp.ID)
	if v.confirmed {
		a.markAuth(ctx, pending.ID)
		a.confirm(ctx, target.TenantID, pending.ID)
	}
	a.supersedeOlder(ctx, imp, target.TenantID)
	a.syncs.schedule(target.TenantID)
	return nil
}

// stageFailed handles a Stage that did not commit: the attempt is counted
// (the backoff grows with it) and the import failed for a retry when the
// store refused an invariant; any other error is a store failure.
func (a *Agent) stageFailed(ctx context.Context, id string, cred *payload.Credential, err error) error {
	if _, cerr := a.countAttempt(ctx, id, cred); cerr != nil {
		return cerr
	}
	if errors.Is(err, store.ErrInvariant) {
		a.failImport(ctx, id, "stage the new credential: "+err.Error(), true)
		return nil
	}
	return storeErr(err)
}

// cutover swaps the credentials in one transaction and announces it.
func (a *Agent) cutover(ctx context.Context, rot store.Rotation) error {
	evs, err := a.st.Cutover(ctx, rot.ID)
	if err != nil {
		return storeErr(err)
	}
	a.announceAll(evs) // rotation.cutover, the import applied
	crashPoint(string(store.EvRotationCutover))
	return nil
}

// confirm retires a tenant's previous credential once the active one,
// credID, has obtained a token, wiping the previous key. A token for a
// credential that is no longer the active one (a sync that began before a
// cut-over and ended after it) confirms nothing (store.Confirm).
func (a *Agent) confirm(ctx context.Context, tenantID, credID string) {
	ev, err := a.st.Confirm(ctx, tenantID, credID)
	if err != nil {
		if !errors.Is(err, store.ErrState) {
			a.log.Error("confirm rotation", "tenant", tenantID, "err", err)
		}
		return
	}
	a.announce(ev)
	crashPoint(string(store.EvRotationConfirmed))
}

func (a *Agent) markAuth(ctx context.Context, credID string) {
	if err := a.st.MarkAuth(ctx, credID, a.cfg.Now()); err != nil {
		a.log.Error("record auth", "credential", credID, "err", err)
		return
	}
	a.changed() // the status shows the last accepted token exchange
}

// newerApplied reports an applied import for tenantID created after imp.
func (a *Agent) newerApplied(ctx context.Context, imp store.Import, tenantID string) (string, bool) {
	o, err := a.st.NewerApplied(ctx, tenantID, imp.CreatedAt, imp.ID)
	if err != nil {
		return "", false
	}
	return o.ID, true
}

// supersedeOlder marks older imports still waiting for the same tenant as superseded.
func (a *Agent) supersedeOlder(ctx context.Context, imp store.Import, tenantID string) {
	imps, err := a.st.ImportsOf(ctx, tenantID, store.ImportPendingUnlock, store.ImportNeedsTarget, store.ImportFailed)
	if err != nil {
		return
	}
	for _, o := range imps {
		if o.ID == imp.ID || o.CreatedAt.After(imp.CreatedAt) {
			continue
		}
		delete(a.waiting, o.ID)
		reason := "import " + imp.ID + " for the same tenant was applied first"
		a.dropLeftovers(ctx, o.ID, "", reason)
		a.setImport(ctx, o.ID, store.ImportSuperseded, reason, tenantID)
	}
}

// followPayload clears the endpoints a manual add recorded on a tenant that
// a payload update has just been applied to: from now on its syncs and
// checks follow the payload's settings, as for a tenant a payload created.
func (a *Agent) followPayload(ctx context.Context, tenantID string) {
	ten, err := a.st.Tenant(ctx, tenantID)
	if err != nil || ten.TokenURL == "" && ten.APIBaseURL == "" {
		return
	}
	if err := a.st.SetEndpoints(ctx, tenantID, "", ""); err != nil {
		a.log.Error("clear tenant endpoints", "tenant", tenantID, "err", err)
		return
	}
	a.changed()
}

// newCredential is the store's record of cred for import imp: managed when
// it came from a payload, local when a person typed it in. A tenant a
// manual add creates records its endpoints; one a payload creates follows
// the payload's settings.
func newCredential(imp store.Import, cred *payload.Credential, w *waiting) store.NewCredential {
	name := imp.Name
	if name == "" {
		name = cred.Name
	}
	nc := store.NewCredential{Name: name, ClientID: cred.ClientID, KeyID: cred.KeyID, Scope: cred.Scope,
		KeyPEM: cred.PEM, Origin: store.OriginManaged, ImportID: imp.ID}
	if w.manual {
		nc.Origin, nc.TokenURL, nc.APIBaseURL = store.OriginLocal, w.settings.TokenURL, w.settings.APIBaseURL
	}
	return nc
}
