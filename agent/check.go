package agent

import (
	"context"

	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/payload"
)

// AuthTarget is a credential and the endpoints to check it against.
type AuthTarget struct {
	apple.Credential
	TokenURL   string
	APIBaseURL string
}

// Checker exchanges a credential for a token to prove it works.
type Checker interface {
	Check(ctx context.Context, t AuthTarget) apple.CheckResult
}

func authTarget(s payload.Settings, c *payload.Credential) AuthTarget {
	return AuthTarget{Credential: apple.Credential{ClientID: c.ClientID, KeyID: c.KeyID, Scope: c.Scope, Key: c.Key},
		TokenURL: s.TokenURL, APIBaseURL: s.APIBase(c.Scope)}
}

// outcome is r's outcome, Unreachable when it is no verdict.
func outcome(r apple.CheckResult) apple.Outcome {
	if r.Outcome == apple.Accepted || r.Outcome == apple.Rejected {
		return r.Outcome
	}
	return apple.Unreachable
}

// checkText describes a check for people: its outcome and reason.
func checkText(r apple.CheckResult) string {
	if r.Reason == "" {
		return string(outcome(r))
	}
	return string(outcome(r)) + " (" + r.Reason + ")"
}
