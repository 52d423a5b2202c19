package store_test

import (
	"context"
	"testing"
)

// The caller resolves a credential's scope from its Client ID; the store
// refuses none at all, and its schema any value Apple does not issue, and
// writes nothing either way.
func TestCredentialWithoutAKnownScopeIsRefused(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	for _, scope := range []string{"", "enterprise.api"} {
		nc := newCred("Main")
		nc.Scope = scope
		if _, _, _, err := s.AddCredential(ctx, nc, "Acme"); err == nil {
			t.Errorf("scope %q: credential added, want an error", scope)
		}
	}
	tenants, err := s.Tenants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tenants) != 0 {
		t.Errorf("a refused credential left tenants behind: %+v", tenants)
	}
	mustHealthy(t, s)
}
