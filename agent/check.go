package agent

import (
	"context"
	"crypto/ecdsa"

	"github.com/rekeyd/rekey/agent/payload"
)

// Outcome classifies an auth check.
type Outcome int

const (
	Unreachable Outcome = iota // network, timeout, 5xx, malformed answer
	Accepted                   // a token was issued
	Rejected                   // the endpoint says the credential is bad
)

func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case Rejected:
		return "rejected"
	}
	return "unreachable"
}

// CheckResult is an auth check's outcome and a secret-free reason.
type CheckResult struct {
	Outcome Outcome
	Reason  string
}

func (r CheckResult) String() string {
	if r.Reason == "" {
		return r.Outcome.String()
	}
	return r.Outcome.String() + " (" + r.Reason + ")"
}

// AuthTarget is a credential and the endpoints to check it against.
type AuthTarget struct {
	ClientID   string
	KeyID      string
	Scope      string
	Key        *ecdsa.PrivateKey
	TokenURL   string
	APIBaseURL string
}

// Checker exchanges a credential for a token to prove it works.
type Checker interface {
	Check(ctx context.Context, t AuthTarget) CheckResult
}

// CheckerFunc adapts a function to Checker (tests, the demo).
type CheckerFunc func(ctx context.Context, t AuthTarget) CheckResult

func (f CheckerFunc) Check(ctx context.Context, t AuthTarget) CheckResult { return f(ctx, t) }

var _ Checker = CheckerFunc(nil)

func authTarget(s payload.Settings, c *payload.Credential) AuthTarget {
	return AuthTarget{ClientID: c.ClientID, KeyID: c.KeyID, Scope: c.Scope, Key: c.Key,
		TokenURL: s.TokenURL, APIBaseURL: s.APIBase(c.Scope)}
}
