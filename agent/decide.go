package agent

import (
	"fmt"
	"strings"

	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// Action is what the agent does with a decrypted import.
type Action string

const (
	ActionAdd            Action = "add"
	ActionUpdate         Action = "update"
	ActionAlreadyPresent Action = "already-present"
	ActionNeedsTarget    Action = "needs-target"
)

// Decision is the outcome of Decide: an action, the credential an update
// replaces, and a reason a person can read.
type Decision struct {
	Action Action
	Target store.Credential // set for ActionUpdate
	Reason string
}

// Identity is the part of a credential that decides intent.
type Identity struct {
	ClientID string
	KeyID    string
}

// Decide applies the intent rules (the table in docs/agent.md, "Deciding the
// intent"). intent is add, update or auto; target is the TargetCredential
// (id, name, Key ID or Client ID), possibly empty; creds are every
// credential in the store. Only active credentials can be replaced; an add
// whose Client ID and Key ID an active or previous credential has is already
// present. An update never silently becomes an add.
func Decide(intent, target string, id Identity, creds []store.Credential) Decision {
	var active, live []store.Credential
	for _, c := range creds {
		switch c.State {
		case store.CredActive:
			active = append(active, c)
			live = append(live, c)
		case store.CredPrevious:
			live = append(live, c)
		}
	}
	switch intent {
	case payload.IntentAdd:
		if c, ok := sameKey(live, id); ok {
			return Decision{Action: ActionAlreadyPresent, Target: c,
				Reason: fmt.Sprintf("credential %q already has this Client ID and Key ID", c.Name)}
		}
		return Decision{Action: ActionAdd, Reason: "intent add: new tenant"}
	case payload.IntentUpdate:
		return decideUpdate(target, id, active, false)
	default: // payload.IntentAuto
		return decideUpdate(target, id, active, true)
	}
}

func decideUpdate(target string, id Identity, active []store.Credential, auto bool) Decision {
	var matches []store.Credential
	how := ""
	if target != "" {
		matches = MatchTarget(target, active)
		how = fmt.Sprintf("target %q", target)
	} else {
		for _, c := range active {
			if c.ClientID == id.ClientID {
				matches = append(matches, c)
			}
		}
		how = "Client ID " + id.ClientID
	}
	switch {
	case len(matches) == 1:
		t := matches[0]
		if t.ClientID == id.ClientID && t.KeyID == id.KeyID {
			return Decision{Action: ActionAlreadyPresent, Target: t,
				Reason: fmt.Sprintf("credential %q already uses this Key ID", t.Name)}
		}
		return Decision{Action: ActionUpdate, Target: t,
			Reason: fmt.Sprintf("%s matches credential %q", how, t.Name)}
	case len(matches) == 0 && auto && target == "":
		return Decision{Action: ActionAdd, Reason: "no credential has this Client ID: new tenant"}
	case len(matches) == 0:
		return Decision{Action: ActionNeedsTarget,
			Reason: fmt.Sprintf("%s matches no active credential; choose one, or add", how)}
	default:
		return Decision{Action: ActionNeedsTarget,
			Reason: fmt.Sprintf("%s matches %d active credentials; choose one", how, len(matches))}
	}
}

// MatchTarget returns the credentials among creds that target names: by id,
// by name (case-insensitive), by Key ID or by Client ID. An id or Key ID
// match wins over weaker matches so that a unique handle always works.
func MatchTarget(target string, creds []store.Credential) []store.Credential {
	t := strings.TrimSpace(target)
	var byID, byName, byClient []store.Credential
	for _, c := range creds {
		switch {
		case c.ID == t || strings.EqualFold(c.KeyID, t):
			byID = append(byID, c)
		case strings.EqualFold(c.Name, t):
			byName = append(byName, c)
		case c.ClientID == t:
			byClient = append(byClient, c)
		}
	}
	if len(byID) > 0 {
		return byID
	}
	if len(byName) > 0 {
		return byName
	}
	return byClient
}

func sameKey(creds []store.Credential, id Identity) (store.Credential, bool) {
	for _, c := range creds {
		if c.ClientID == id.ClientID && c.KeyID == id.KeyID {
			return c, true
		}
	}
	return store.Credential{}, false
}
