package agent

import (
	"context"
	"crypto/subtle"

	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// A rotation is left unfinished between two attempts of an import in two
// cases: a store write failed half way (the active credential was never
// touched), or a required auth check could not reach Apple (unreachable: a
// network failure or a system clock far off). In the second case nothing
// says the new key is bad, so its staged credential is kept, across
// restarts too, and the import's next attempt checks it again instead of
// staging it anew. Everything else left unfinished is failed (its pending
// key wiped) before an attempt stages: an import's own leftover with
// another key, or another import's leftover for the same tenant (one
// unfinished rotation per tenant), and the leftover of an import that
// leaves the waiting states (withdrawn, superseded, dismissed).

// keptRotation is a staged rotation taken up again, with its credential.
type keptRotation struct {
	rot  store.Rotation
	cred store.Credential
}

// leftover fails the unfinished rotations an attempt of import id for
// tenantID must not find, and returns the one it takes up again: when
// reuse is set (the attempt runs the auth check), the import's own staged
// rotation of exactly cred's credential (Client ID, Key ID and key).
func (a *Agent) leftover(ctx context.Context, id, tenantID string, cred *payload.Credential, reuse bool) (keptRotation, error) {
	rots, err := a.st.UnfinishedRotations(ctx)
	if err != nil {
		return keptRotation{}, storeErr(err)
	}
	var kept keptRotation
	for _, rot := range rots {
		if rot.ImportID != id && rot.TenantID != tenantID {
			continue
		}
		if reuse && kept.rot.ID == "" && rot.ImportID == id && rot.TenantID == tenantID && rot.Step == store.StepStaged {
			if c, ok := a.sameStaged(ctx, rot, cred); ok {
				kept = keptRotation{rot, c}
				a.publish(ctx, store.Event{Kind: store.EvRotationResumed, TenantID: tenantID, RotationID: rot.ID,
					ImportID: id, CredentialID: c.ID, Message: "checking the kept staged credential again"})
				continue
			}
		}
		reason := "an earlier attempt stopped before the cut-over; replaced by this attempt of import " + id
		if err := a.failRotation(ctx, rot, reason); err != nil {
			return keptRotation{}, err
		}
	}
	return kept, nil
}

// sameStaged returns the credential rot staged when it is cred's.
func (a *Agent) sameStaged(ctx context.Context, rot store.Rotation, cred *payload.Credential) (store.Credential, bool) {
	c, err := a.st.Credential(ctx, rot.ToCredentialID)
	if err != nil || c.ClientID != cred.ClientID || c.KeyID != cred.KeyID {
		return c, false
	}
	pem, err := a.st.Key(ctx, c.ID)
	defer clear(pem)
	return c, err == nil && subtle.ConstantTimeCompare(pem, cred.PEM) == 1
}

// dropLeftovers fails every unfinished rotation of import id, and of
// tenantID when it is not "".
func (a *Agent) dropLeftovers(ctx context.Context, id, tenantID, reason string) error {
	rots, err := a.st.UnfinishedRotations(ctx)
	if err != nil {
		return storeErr(err)
	}
	for _, rot := range rots {
		if rot.ImportID == id || tenantID != "" && rot.TenantID == tenantID {
			if err := a.failRotation(ctx, rot, reason); err != nil {
				return err
			}
		}
	}
	return nil
}

// failRotation fails rot, wiping its pending key, and announces it.
func (a *Agent) failRotation(ctx context.Context, rot store.Rotation, reason string) error {
	failed, err := a.st.FailRotation(ctx, rot.ID, reason)
	if err != nil {
		return storeErr(err)
	}
	a.announce(failed)
	return nil
}

// keptForRetry reports whether recovery keeps a staged rotation: its import
// failed on an unreachable required check and waits for a retry from its
// payload (the first sight of the payload after a start retries it).
func (a *Agent) keptForRetry(ctx context.Context, rot store.Rotation) bool {
	if rot.Step != store.StepStaged {
		return false
	}
	imp, err := a.st.Import(ctx, rot.ImportID)
	return err == nil && imp.State == store.ImportFailed && imp.Source != ManualSource
}
