package main

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/store"
)

// TestCheckOfATenantNameChecksItsActiveCredential: after a rotation to
// "Acme 2026" the tenant is still "Acme", and so is its first, retired
// credential; 'rekey check Acme' means the tenant's working key.
func TestCheckOfATenantNameChecksItsActiveCredential(t *testing.T) {
	f := fakeAgent()
	creds := f.CredentialsFunc
	f.CredentialsFunc = func(ctx context.Context) ([]store.Credential, error) {
		cs, err := creds(ctx)
		return append(cs, store.Credential{ID: "c0", TenantID: "t1", Name: "Acme", ClientID: "BUSINESSAPI.9f1c", KeyID: "k-2024",
			Scope: "business.api", State: store.CredRetired}), err
	}
	var checked []string
	f.CheckFunc = func(_ context.Context, id string) (api.CheckAnswer, error) {
		checked = append(checked, id)
		return api.CheckAnswer{CredentialID: id, Outcome: "accepted"}, nil
	}
	sock := startAgent(t, f)
	for _, tc := range []struct{ arg, want string }{
		{"Acme", "c2"},      // the tenant's name: its active credential, not the retired "Acme"
		{"acme", "c2"},      // names match case-insensitively
		{"t1", "c2"},        // the tenant's id
		{"Acme 2026", "c2"}, // the active credential's own name
		{"Acme 2025", "c1"}, // a previous credential, named
		{"k-2024", "c0"},    // a retired one by Key ID: the agent says why it cannot be checked
	} {
		checked = nil
		code, out, errOut := runAt(t, sock, "", "check", tc.arg, "--json")
		var got struct{ Checks []api.CheckAnswer }
		if code != exitOK || json.Unmarshal([]byte(out), &got) != nil || len(checked) != 1 || checked[0] != tc.want {
			t.Errorf("check %q: exit %d, checked %v, want [%s]; out %q, err %q", tc.arg, code, checked, tc.want, out, errOut)
		}
	}
}
