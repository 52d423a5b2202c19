package agent

import (
	"testing"

	"github.com/rekeyd/rekey/store"
)

const (
	clientA = "BUSINESSAPI.11111111-1111-4111-8111-111111111111"
	clientB = "BUSINESSAPI.22222222-2222-4222-8222-222222222222"
	keyOld  = "aaaaaaaa-0000-4000-8000-000000000001"
	keyNew  = "aaaaaaaa-0000-4000-8000-000000000002"
	keyOth  = "aaaaaaaa-0000-4000-8000-000000000003"
)

func cred(id, tenant, name, client, key string, state store.CredState) store.Credential {
	return store.Credential{ID: id, TenantID: tenant, Name: name, ClientID: client, KeyID: key, State: state}
}

func TestDecide(t *testing.T) {
	one := []store.Credential{cred("cred_1", "ten_1", "Acme ABM", clientA, keyOld, store.CredActive)}
	two := append([]store.Credential{cred("cred_2", "ten_2", "Acme School", clientA, keyOth, store.CredActive)}, one...)
	retiredOnly := []store.Credential{cred("cred_9", "ten_1", "Old", clientA, keyNew, store.CredRetired)}
	previousSame := append([]store.Credential{cred("cred_8", "ten_1", "Prev", clientA, keyNew, store.CredPrevious)}, one...)
	tests := []struct {
		name       string
		intent     string
		target     string
		id         Identity
		creds      []store.Credential
		wantAction Action
		wantTarget string
	}{
		{"add into empty store adds", "add", "", Identity{clientA, keyNew}, nil, ActionAdd, ""},
		{"add of a known key is already present", "add", "", Identity{clientA, keyOld}, one, ActionAlreadyPresent, "cred_1"},
		{"add of a key kept as previous is already present", "add", "", Identity{clientA, keyNew}, previousSame, ActionAlreadyPresent, "cred_8"},
		{"add with same client id and new key adds", "add", "", Identity{clientA, keyNew}, one, ActionAdd, ""},
		{"add of a retired key adds", "add", "", Identity{clientA, keyNew}, retiredOnly, ActionAdd, ""},
		{"update by name (any case)", "update", "acme abm", Identity{clientA, keyNew}, two, ActionUpdate, "cred_1"},
		{"update by key id", "update", keyOld, Identity{clientA, keyNew}, two, ActionUpdate, "cred_1"},
		{"update by credential id", "update", "cred_2", Identity{clientA, keyNew}, two, ActionUpdate, "cred_2"},
		{"update by client id with one match", "update", clientA, Identity{clientA, keyNew}, one, ActionUpdate, "cred_1"},
		{"update by client id with two matches needs target", "update", clientA, Identity{clientA, keyNew}, two, ActionNeedsTarget, ""},
		{"update without target uses the single same client id", "update", "", Identity{clientA, keyNew}, one, ActionUpdate, "cred_1"},
		{"update without target and no match needs target", "update", "", Identity{clientB, keyNew}, one, ActionNeedsTarget, ""},
		{"update never becomes an add in an empty store", "update", "", Identity{clientA, keyNew}, nil, ActionNeedsTarget, ""},
		{"update with unknown target needs target", "update", "nope", Identity{clientA, keyNew}, one, ActionNeedsTarget, ""},
		{"update to the same key is already present", "update", "Acme ABM", Identity{clientA, keyOld}, one, ActionAlreadyPresent, "cred_1"},
		{"update ignores retired credentials", "update", "", Identity{clientA, keyOth}, retiredOnly, ActionNeedsTarget, ""},
		{"auto with target updates", "auto", "Acme School", Identity{clientA, keyNew}, two, ActionUpdate, "cred_2"},
		{"auto with unknown target needs target", "auto", "nope", Identity{clientA, keyNew}, two, ActionNeedsTarget, ""},
		{"auto with one same client id updates", "auto", "", Identity{clientA, keyNew}, one, ActionUpdate, "cred_1"},
		{"auto with no same client id adds", "auto", "", Identity{clientB, keyNew}, one, ActionAdd, ""},
		{"auto with several same client id needs target", "auto", "", Identity{clientA, keyNew}, two, ActionNeedsTarget, ""},
		{"auto with the same key is already present", "auto", "", Identity{clientA, keyOld}, one, ActionAlreadyPresent, "cred_1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.intent, tt.target, tt.id, tt.creds)
			if d.Action != tt.wantAction || d.Target.ID != tt.wantTarget {
				t.Fatalf("Decide = %s target %q (%s), want %s target %q", d.Action, d.Target.ID, d.Reason, tt.wantAction, tt.wantTarget)
			}
			if d.Reason == "" {
				t.Fatal("a decision must say why")
			}
		})
	}
}
