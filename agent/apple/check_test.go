package apple_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/apple/appletest"
)

func TestCheckAcceptedTokenIsCachedForSync(t *testing.T) {
	f := newFixture(t, 3)
	res := f.client.Check(t.Context(), f.cred)
	if res.Outcome != apple.Accepted || res.Err != nil {
		t.Fatalf("Check = %+v, want accepted; fake refused: %v", res, f.srv.Rejections())
	}
	if err := f.sync(t.Context(), newSink(), nil); err != nil {
		t.Fatal(err)
	}
	if got := f.srv.Stats().TokensIssued; got != 1 {
		t.Errorf("tokens issued = %d, want 1 (Sync reuses Check's token)", got)
	}
	// Check itself never trusts the cache: it asks again.
	if res := f.client.Check(t.Context(), f.cred); res.Outcome != apple.Accepted {
		t.Fatalf("second Check = %+v", res)
	}
	if got := f.srv.Stats().TokensIssued; got != 2 {
		t.Errorf("tokens issued = %d, want 2", got)
	}
}

func TestCheckSchoolScopeFromClientID(t *testing.T) {
	f := newFixture(t, 0)
	key, err := f.srv.NewCredential(apple.ScopeSchool)
	if err != nil {
		t.Fatal(err)
	}
	cred := apple.Credential{ClientID: key.ClientID, KeyID: key.KeyID, Key: key.Private}
	if res := f.client.Check(t.Context(), cred); res.Outcome != apple.Accepted {
		t.Fatalf("Check = %+v; fake refused: %v", res, f.srv.Rejections())
	}
}

func TestCheckRejected(t *testing.T) {
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		edit      func(*fixture, *apple.Credential)
		fakeSaw   string // in the fake's rejection reason
		invalidIn bool   // refused before any request
	}{
		{name: "signature from another key", edit: func(_ *fixture, c *apple.Credential) { c.Key = other },
			fakeSaw: "signature"},
		{name: "wrong key id in kid", edit: func(_ *fixture, c *apple.Credential) { c.KeyID = "00000000-0000-0000-0000-000000000000" },
			fakeSaw: "kid"},
		{name: "unknown client id", edit: func(_ *fixture, c *apple.Credential) { c.ClientID = "BUSINESSAPI.unknown" },
			fakeSaw: "not registered"},
		{name: "wrong key and a clock within five minutes", edit: func(f *fixture, c *apple.Credential) {
			c.Key = other
			f.client.Clock = laterClock{f.clock, -4 * time.Minute}
		}, fakeSaw: "signature"},
		{name: "fake says invalid_client", edit: func(f *fixture, _ *apple.Credential) {
			f.srv.Fail(appletest.Fault{Endpoint: appletest.TokenEndpoint, Mode: appletest.InvalidClient})
		}},
		{name: "fake says 401", edit: func(f *fixture, _ *apple.Credential) {
			f.srv.Fail(appletest.Fault{Endpoint: appletest.TokenEndpoint, Mode: appletest.Unauthorized})
		}},
		{name: "no private key", edit: func(_ *fixture, c *apple.Credential) { c.Key = nil }, invalidIn: true},
		{name: "scope contradicts client id", edit: func(_ *fixture, c *apple.Credential) { c.Scope = apple.ScopeSchool }, invalidIn: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 0)
			cred := f.cred
			tt.edit(f, &cred)
			res := f.client.Check(t.Context(), cred)
			if res.Outcome != apple.Rejected || !errors.Is(res.Err, apple.ErrRejected) {
				t.Fatalf("Check = %+v, want rejected", res)
			}
			if res.Reason == "" {
				t.Error("rejected without a reason")
			}
			if errors.Is(res.Err, apple.ErrInvalidCredential) != tt.invalidIn {
				t.Errorf("Is(ErrInvalidCredential) = %v, want %v (%v)", !tt.invalidIn, tt.invalidIn, res.Err)
			}
			if tt.invalidIn && f.srv.Stats().TokenRequests != 0 {
				t.Error("an unusable credential was sent to the token endpoint")
			}
			if tt.fakeSaw != "" && !strings.Contains(strings.Join(f.srv.Rejections(), "\n"), tt.fakeSaw) {
				t.Errorf("fake rejections %q do not mention %q", f.srv.Rejections(), tt.fakeSaw)
			}
			if len(f.waits()) != 0 {
				t.Errorf("a rejection was retried: waits %v", f.waits())
			}
		})
	}
}

func TestCheckUnreachable(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*testing.T, *fixture) context.Context
		waits int // retries expected before giving up
		is    error
	}{
		{name: "503 every time", waits: apple.DefaultMaxTries - 1, edit: func(t *testing.T, f *fixture) context.Context {
			f.srv.Fail(appletest.Fault{Endpoint: appletest.TokenEndpoint, Mode: appletest.ServerError, Times: -1})
			return t.Context()
		}},
		{name: "429 every time", waits: apple.DefaultMaxTries - 1, edit: func(t *testing.T, f *fixture) context.Context {
			f.srv.Fail(appletest.Fault{Endpoint: appletest.TokenEndpoint, Mode: appletest.RateLimited, Times: -1, RetryAfter: "2"})
			return t.Context()
		}},
		{name: "malformed JSON", edit: func(t *testing.T, f *fixture) context.Context {
			f.srv.Fail(appletest.Fault{Endpoint: appletest.TokenEndpoint, Mode: appletest.Malformed})
			return t.Context()
		}},
		{name: "no token endpoint at the URL", edit: func(t *testing.T, f *fixture) context.Context {
			f.client.TokenURL = f.srv.URL() + "/nothing-here"
			return t.Context()
		}},
		{name: "closed port", waits: apple.DefaultMaxTries - 1, edit: func(t *testing.T, f *fixture) context.Context {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			l.Close()
			f.client.TokenURL = "http://" + addr + "/auth/oauth2/token"
			return t.Context()
		}},
		{name: "timeout by context", is: context.DeadlineExceeded, edit: func(t *testing.T, f *fixture) context.Context {
			f.srv.Fail(appletest.Fault{Endpoint: appletest.TokenEndpoint, Mode: appletest.Hang})
			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
			t.Cleanup(cancel)
			return ctx
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 0)
			ctx := tt.edit(t, f)
			res := f.client.Check(ctx, f.cred)
			if res.Outcome != apple.Unreachable || !errors.Is(res.Err, apple.ErrUnreachable) {
				t.Fatalf("Check = %+v, want unreachable", res)
			}
			if errors.Is(res.Err, apple.ErrRejected) {
				t.Errorf("unreachable result also wraps ErrRejected: %v", res.Err)
			}
			if tt.is != nil && !errors.Is(res.Err, tt.is) {
				t.Errorf("Check error %v does not wrap %v", res.Err, tt.is)
			}
			if got := len(f.waits()); got != tt.waits {
				t.Errorf("waited %d times (%v), want %d", got, f.waits(), tt.waits)
			}
		})
	}
}

func TestTokenCachedForItsLifetimeMinusMargin(t *testing.T) {
	f := newFixture(t, 1)
	f.srv.SetTokenLifetime(20 * time.Minute) // margin is 5 min: reused until minute 15
	sync := func() {
		t.Helper()
		if err := f.sync(t.Context(), newSink(), nil); err != nil {
			t.Fatal(err)
		}
	}
	sync()
	f.clock.Add(14 * time.Minute)
	sync()
	if got := f.srv.Stats().TokensIssued; got != 1 {
		t.Fatalf("tokens issued after 14 min = %d, want 1", got)
	}
	f.clock.Add(2 * time.Minute)
	sync()
	if got := f.srv.Stats().TokensIssued; got != 2 {
		t.Fatalf("tokens issued after 16 min = %d, want 2", got)
	}
}

func TestAssertionClaims(t *testing.T) {
	f := newFixture(t, 0)
	f.client.AssertionLifetime = 0 // default
	at := f.clock.Now()
	a1, err := f.client.Assertion(f.cred, at)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := f.client.Assertion(f.cred, at)
	if err != nil {
		t.Fatal(err)
	}
	h1, c1 := decodeJWT(t, a1)
	_, c2 := decodeJWT(t, a2)
	want := map[string]any{
		"iss": f.cred.ClientID, "sub": f.cred.ClientID, "aud": apple.Audience,
		"iat": float64(at.Add(-apple.IssuedAtBackdate).Unix()), "exp": float64(at.Add(apple.DefaultAssertionLifetime).Unix()),
	}
	for k, v := range want {
		if c1[k] != v {
			t.Errorf("claim %s = %v, want %v", k, c1[k], v)
		}
	}
	if h1["alg"] != "ES256" || h1["kid"] != f.cred.KeyID {
		t.Errorf("header = %v, want alg ES256 and kid %s", h1, f.cred.KeyID)
	}
	if c1["jti"] == "" || c1["jti"] == c2["jti"] {
		t.Errorf("jti %v and %v: want distinct UUIDs", c1["jti"], c2["jti"])
	}
}

func TestCheckBlamesAWrongClockNotTheKey(t *testing.T) {
	f := newFixture(t, 0)
	f.client.Clock = laterClock{f.clock, -2 * time.Hour}
	res := f.client.Check(t.Context(), f.cred)
	if res.Outcome != apple.Unreachable || errors.Is(res.Err, apple.ErrRejected) || !errors.Is(res.Err, apple.ErrUnreachable) {
		t.Fatalf("Check with a clock two hours behind = %+v, want unreachable", res)
	}
	if res.ClockSkew != 2*time.Hour || !strings.Contains(res.Reason, "system clock is off by 2h0m0s") {
		t.Fatalf("skew %v, reason %q", res.ClockSkew, res.Reason)
	}
	if !strings.Contains(strings.Join(f.srv.Rejections(), "\n"), "expired") {
		t.Errorf("the fake refused for %q, want an expired assertion", f.srv.Rejections())
	}
}

func TestCheckBackdatedIssuedAtSurvivesASlowServerClock(t *testing.T) {
	f := newFixture(t, 0)
	// The token endpoint's clock is 100 s behind ours: an iat of "now" would
	// be 100 s in its future, beyond its minute of leeway.
	f.client.Clock = laterClock{f.clock, 100 * time.Second}
	if res := f.client.Check(t.Context(), f.cred); res.Outcome != apple.Accepted {
		t.Fatalf("Check = %+v, want accepted", res)
	}
}

func TestCheckKeepsApplesErrorID(t *testing.T) {
	f := newFixture(t, 0)
	f.srv.Fail(appletest.Fault{Endpoint: appletest.TokenEndpoint, Mode: appletest.ServerError, Times: -1})
	res := f.client.Check(t.Context(), f.cred)
	if res.Outcome != apple.Unreachable || res.ErrorID == "" || !strings.Contains(res.Reason, "Apple error id "+res.ErrorID) {
		t.Fatalf("Check = %+v, want unreachable with Apple's error id", res)
	}
}
