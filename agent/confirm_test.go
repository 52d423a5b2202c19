package agent

import (
	"context"
	"testing"

	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/store"
)

// A sync that began with the previous credential and ends after the
// cut-over reports a token for that credential: the new one is not
// confirmed by it, and the previous key stays for a rollback.
func TestATokenForThePreviousCredentialConfirmsNothing(t *testing.T) {
	a := newSnapAgent(t)
	ctx := context.Background()
	const clientID = "BUSINESSAPI.confirm-test"
	ten, old, _, err := a.st.AddCredential(ctx, localCred(t, "Acme", clientID), "Acme")
	if err != nil {
		t.Fatal(err)
	}
	rot, _, _, err := a.st.Stage(ctx, ten.ID, localCred(t, "Acme 2", clientID))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.st.ValidateAndCutover(ctx, rot.ID); err != nil {
		t.Fatal(err)
	}
	a.confirmed(ctx, ten.ID, old.ID) // the sync's token, for the credential it began with
	if c, err := a.st.Credential(ctx, old.ID); err != nil || c.State != store.CredPrevious || !c.HasKey {
		t.Fatalf("previous credential after a token for it: %+v, %v; want it kept, key and all", c, err)
	}
	a.confirmed(ctx, ten.ID, rot.ToCredentialID) // the new credential's own token
	if c, err := a.st.Credential(ctx, old.ID); err != nil || c.State != store.CredRetired {
		t.Fatalf("previous credential after the new one's token: %+v, %v; want it retired", c, err)
	}
}

// localCred is a credential typed in by hand, with a fresh key ("" for a
// new Client ID).
func localCred(t *testing.T, name, clientID string) store.NewCredential {
	t.Helper()
	k, err := appletest.GenerateKey(clientID)
	if err != nil {
		t.Fatal(err)
	}
	return store.NewCredential{Name: name, ClientID: k.ClientID, KeyID: k.KeyID, Scope: k.Scope, KeyPEM: k.PEM, Origin: store.OriginLocal}
}
