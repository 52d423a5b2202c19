package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

var (
	// errNotWaiting: the import's entry is not in the managed preferences now.
	errNotWaiting = errors.New("import is not waiting for a decision")
	// errBadChoice: the target a UI chose for an update cannot be used.
	errBadChoice = errors.New("invalid choice")
)

// attemptInput is what a UI adds to an attempt: a password and a choice.
type attemptInput struct {
	password string // "" uses the passphrase file
	intent   string // "", add or update (checked by Unlock)
	target   string // credential for update
}

// errStore marks an attempt stopped by a failed store write or read (disk
// full, read-only filesystem, database locked or gone). Such a failure may
// pass, so the import is failed as transient and retried with backoff.
var errStore = errors.New("store unavailable")

// storeErr marks err (whose text names the store operation) as errStore.
func storeErr(err error) error { return fmt.Errorf("%w: %w", errStore, err) }

// attempt decrypts a waiting import, decides what to do and does it, with
// one scheduler slot more (withExtraSlot). The plaintext credential lives
// only for the duration of the call.
func (a *Agent) attempt(ctx context.Context, id string, in attemptInput) (err error) {
	withExtraSlot(func() {
		if err = a.tryImport(ctx, id, in); errors.Is(err, errStore) {
			a.retryLater(ctx, id, err)
		}
	})
	return err
}

// retryLater fails the import's unfinished rotation, if any, and the import
// itself as transient after a store failure. Either write may fail too while
// the store is unavailable; the retry is scheduled in memory regardless and
// the next attempt clears what is left.
func (a *Agent) retryLater(ctx context.Context, id string, cause error) {
	if imp, err := a.st.Import(ctx, id); err == nil && imp.State.Final() {
		return // the change went through after all
	}
	reason := cause.Error() + "; the active credential is unchanged; retried"
	a.dropLeftovers(ctx, id, "", reason)
	a.failImport(ctx, id, reason, true)
	if imp, err := a.st.Import(ctx, id); err != nil || imp.State != store.ImportFailed {
		// The store could not record the failure either: live subscribers
		// still learn of it; a restart records it (recovery).
		a.publishUnrecorded(ctx, id, reason)
	}
}

func (a *Agent) tryImport(ctx context.Context, id string, in attemptInput) error {
	w := a.waiting[id]
	if w == nil {
		return errNotWaiting
	}
	cred, err := a.decrypt(ctx, id, w, in.password)
	if err != nil {
		return err
	}
	defer cred.Wipe()
	imp, err := a.st.Import(ctx, id)
	if err != nil {
		return storeErr(err)
	}
	d, err := a.decide(ctx, imp, cred, in)
	if err == nil && d.Action == ActionUpdate {
		// Stage records the identity and counts the attempt in its own
		// transaction: one write fewer on the way to the cut-over.
		return a.rotate(ctx, imp, w, cred, d.Target)
	}
	imp, cerr := a.countAttempt(ctx, id, cred)
	if cerr != nil {
		return cerr
	}
	if err != nil {
		return err
	}
	switch d.Action {
	case ActionAlreadyPresent:
		delete(a.waiting, id)
		a.setImport(ctx, id, store.ImportAlreadyPresent, d.Reason, d.Target.TenantID)
	case ActionNeedsTarget:
		a.setImport(ctx, id, store.ImportNeedsTarget, d.Reason, "")
	case ActionAdd:
		return a.add(ctx, imp, w, cred)
	}
	return nil
}

// countAttempt records the credential's identity on the import and counts
// one more attempt (which the retry backoff grows with).
func (a *Agent) countAttempt(ctx context.Context, id string, cred *payload.Credential) (store.Import, error) {
	imp, err := a.st.UpdateImport(ctx, id, func(imp *store.Import) error {
		imp.ClientID, imp.KeyID = cred.ClientID, cred.KeyID
		imp.Attempts++
		return nil
	})
	if err != nil {
		return imp, storeErr(err)
	}
	return imp, nil
}

// decrypt opens the payload with the UI's password or the passphrase file.
// No fitting passphrase leaves the import waiting as pending-unlock.
func (a *Agent) decrypt(ctx context.Context, id string, w *waiting, password string) (*payload.Credential, error) {
	var passes []string
	why := "no passphrase in the passphrase file opens it; unlock it from a UI"
	if password != "" {
		passes = []string{password}
	} else {
		p, err := payload.ReadPassphrases(a.cfg.PassphraseFile, a.cfg.Trust)
		switch {
		case err == nil:
			passes = p
		case errors.Is(err, fs.ErrNotExist):
			why = fmt.Sprintf("the passphrase file %s does not exist; restore it or unlock the import from a UI", a.cfg.PassphraseFile)
		default:
			why = "the passphrase file is refused (" + err.Error() + "); fix it or unlock the import from a UI"
			a.publish(ctx, store.Event{Kind: store.EvSourceRefused, ImportID: id, Message: "passphrase file refused: " + err.Error()})
		}
	}
	cred, err := openPayload(w.entry.Ciphertext, passes, a.cfg.MaxWorkFactor)
	switch {
	case err == nil:
		return cred, nil
	case errors.Is(err, payload.ErrWrongPassphrase):
		if password != "" {
			return nil, api.ErrWrongPassword
		}
		a.setImport(ctx, id, store.ImportPendingUnlock, why, "")
		return nil, err
	default:
		w.transient = false
		a.setImport(ctx, id, store.ImportFailed, err.Error(), "")
		return nil, err
	}
}

// decide applies a UI's choice (add, or update of a named target) when there
// is one, else the payload's intent and target, both through Decide.
func (a *Agent) decide(ctx context.Context, imp store.Import, cred *payload.Credential, in attemptInput) (Decision, error) {
	creds, err := a.st.CredentialsInUse(ctx) // Decide looks at active and previous ones only
	if err != nil {
		return Decision{}, storeErr(err)
	}
	id := Identity{ClientID: cred.ClientID, KeyID: cred.KeyID}
	switch in.intent {
	case payload.IntentAdd:
		return Decide(payload.IntentAdd, "", id, creds), nil
	case payload.IntentUpdate:
		if in.target == "" {
			return Decision{}, fmt.Errorf("%w: update needs a target credential", errBadChoice)
		}
		d := Decide(payload.IntentUpdate, in.target, id, creds)
		if d.Action == ActionNeedsTarget {
			return Decision{}, fmt.Errorf("%w: %s", errBadChoice, d.Reason)
		}
		return d, nil
	}
	return Decide(imp.Intent, imp.Target, id, creds), nil
}

// failImport records a failure before cut-over. transient failures are
// retried with backoff; lasting ones wait for a UI or a new payload.
func (a *Agent) failImport(ctx context.Context, id string, reason string, transient bool) {
	if w := a.waiting[id]; w != nil {
		w.transient = transient
		if transient {
			imp, _ := a.st.Import(ctx, id)
			w.nextTry = a.cfg.Now().Add(a.cfg.Backoff(max(imp.Attempts, 1)))
			kick(a.retryKick)
		}
	}
	a.setImport(ctx, id, store.ImportFailed, reason, "")
}
