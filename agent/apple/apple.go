// Package apple talks to the Apple Business Manager and Apple School Manager
// API: it signs the ES256 client assertion, exchanges it for a bearer token,
// classifies that exchange, and imports organisation devices with their
// AppleCare coverage.
package apple

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Endpoints and constants of Apple's OAuth flow. They are the one place
// rekey writes Client ID prefix → scope → API host; every other package
// (payload, the fake in appletest, the agent) asks this one.
const (
	// DefaultTokenURL is where the client assertion is exchanged for a token.
	DefaultTokenURL = "https://account.apple.com/auth/oauth2/token"
	// Audience is the aud claim Apple requires in the client assertion.
	Audience = "https://account.apple.com/auth/oauth2/v2/token"
	// BusinessBaseURL and SchoolBaseURL are the API hosts by scope.
	BusinessBaseURL = "https://api-business.apple.com"
	SchoolBaseURL   = "https://api-school.apple.com"
	// ScopeBusiness and ScopeSchool are the OAuth scopes.
	ScopeBusiness = "business.api"
	ScopeSchool   = "school.api"
	// ClientIDPrefixBusiness and ClientIDPrefixSchool begin a Client ID of
	// each scope: BUSINESSAPI.<uuid>, SCHOOLAPI.<uuid>.
	ClientIDPrefixBusiness = "BUSINESSAPI."
	ClientIDPrefixSchool   = "SCHOOLAPI."
	// AssertionType is the client_assertion_type form value.
	AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// Defaults for the zero values of Client's tuning fields.
const (
	DefaultAssertionLifetime = 10 * time.Minute
	DefaultPageLimit         = 1000 // Apple's maximum; always asked for
	DefaultMaxTries          = 5
	DefaultMaxRetryAfter     = time.Hour // a longer Retry-After pauses the sync
	DefaultBatchSize         = 50
	DefaultBatchInterval     = 30 * time.Second
	// IssuedAtBackdate is how far before now a client assertion says it was
	// issued, so that a token endpoint whose clock is a little behind ours
	// does not refuse it as issued in the future.
	IssuedAtBackdate = 60 * time.Second
	// MaxClockSkew is how far the token endpoint's Date may be from the
	// local clock before a refusal is blamed on the clock.
	MaxClockSkew         = 5 * time.Minute
	DefaultBackoffBase   = time.Second
	DefaultBackoffMax    = 30 * time.Second
	defaultTokenLifetime = time.Hour
	tokenMargin          = 5 * time.Minute
)

// Sentinel errors callers branch on.
var (
	// ErrRejected: Apple says the credential is not good (invalid_client,
	// invalid_grant, a token refused twice, ...). Retrying will not help.
	ErrRejected = errors.New("apple rejected the credential")
	// ErrUnreachable: no usable answer (network error, timeout, 5xx, rate
	// limit that did not clear, malformed answer). Retrying later may help.
	ErrUnreachable = errors.New("apple endpoint unreachable")
	// ErrInvalidCredential: the credential cannot be used as given (missing
	// field, wrong key curve, Client ID and scope that do not match).
	ErrInvalidCredential = errors.New("invalid credential")
)

// Clock tells the time. Every injected clock in rekey has this one shape
// (docs/ARCHITECTURE.md); nil means the real clock.
type Clock interface{ Now() time.Time }

// Credential is what the client needs to authenticate. Scope may be empty:
// it is derived from the Client ID prefix (BUSINESSAPI. or SCHOOLAPI.).
type Credential struct {
	ClientID string
	KeyID    string
	Scope    string
	Key      *ecdsa.PrivateKey
}

// String never shows the key.
func (c Credential) String() string {
	return fmt.Sprintf("apple.Credential{ClientID: %q, KeyID: %q, Scope: %q}", c.ClientID, c.KeyID, c.Scope)
}

// GoString never shows the key either (%#v).
func (c Credential) GoString() string { return c.String() }

// Client is an Apple Business/School Manager API client. The zero value is
// ready to use with Apple's real endpoints; tests point TokenURL and
// APIBaseURL at a local server and inject Clock, Sleep and Jitter.
// A Client is safe for concurrent use. Its token cache lives in memory only.
type Client struct {
	TokenURL   string       // default DefaultTokenURL
	APIBaseURL string       // default by scope: BusinessBaseURL or SchoolBaseURL
	HTTP       *http.Client // default: a client with a 60 s timeout and keep-alives for the most workers a budget allows

	Clock  Clock                                            // default: the real clock
	Sleep  func(ctx context.Context, d time.Duration) error // default: a timer that honours ctx
	Jitter func(max time.Duration) time.Duration            // default: uniform in [0, max]

	AssertionLifetime time.Duration // exp - now of the client assertion; default 10 min
	MaxTries          int           // attempts per request on 5xx/network errors; default 5
	MaxRetryAfter     time.Duration // longest Retry-After waited; longer pauses the sync; default 1 h
	BatchSize         int           // coverage reads per commit; default 50
	BatchInterval     time.Duration // longest time coverage reads wait to be committed; default 30 s
	BackoffBase       time.Duration // first 5xx backoff, doubled each try; default 1 s
	BackoffMax        time.Duration // cap on the 5xx backoff; default 30 s

	mu       sync.Mutex
	tokens   map[cacheKey]token
	fetching map[cacheKey]*sync.Mutex // held while a token is fetched for the cache
	defHTTP  *http.Client
}

// String describes the client without its token cache.
func (c *Client) String() string {
	return fmt.Sprintf("apple.Client{TokenURL: %q, APIBaseURL: %q}", c.TokenURL, c.APIBaseURL)
}

// GoString keeps %#v from printing cached tokens.
func (c *Client) GoString() string { return c.String() }

// token is a bearer token and when the client stops using it.
type token struct {
	value string
	until time.Time
}

type cacheKey struct{ tokenURL, clientID, keyID, scope, pub string }

func (c *Client) now() time.Time {
	if c.Clock != nil {
		return c.Clock.Now()
	}
	return time.Now()
}

func (c *Client) sleep(ctx context.Context, d time.Duration) error {
	if c.Sleep != nil {
		return c.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (c *Client) jitter(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	if c.Jitter != nil {
		return c.Jitter(max)
	}
	return rand.N(max + 1)
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.defHTTP == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 2 * maxWorkers
		tr.DialContext = (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		c.defHTTP = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	}
	return c.defHTTP
}

func orDefault[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

func (c *Client) tokenURL() string {
	if c.TokenURL != "" {
		return c.TokenURL
	}
	return DefaultTokenURL
}

func (c *Client) apiBase(scope string) string {
	if c.APIBaseURL != "" {
		return strings.TrimRight(c.APIBaseURL, "/")
	}
	return BaseURLFor(scope)
}

// BaseURLFor returns Apple's API host for scope: SchoolBaseURL for
// school.api, BusinessBaseURL otherwise.
func BaseURLFor(scope string) string {
	if scope == ScopeSchool {
		return SchoolBaseURL
	}
	return BusinessBaseURL
}

// ScopeFor returns the scope a Client ID implies: business.api for
// BUSINESSAPI.<uuid>, school.api for SCHOOLAPI.<uuid>, "" otherwise.
func ScopeFor(clientID string) string {
	switch {
	case strings.HasPrefix(clientID, ClientIDPrefixBusiness):
		return ScopeBusiness
	case strings.HasPrefix(clientID, ClientIDPrefixSchool):
		return ScopeSchool
	}
	return ""
}

// ClientIDPrefix returns the Client ID prefix of scope: SCHOOLAPI. for
// school.api, BUSINESSAPI. otherwise.
func ClientIDPrefix(scope string) string {
	if scope == ScopeSchool {
		return ClientIDPrefixSchool
	}
	return ClientIDPrefixBusiness
}

// resolve checks the credential and fills in its scope.
func resolve(cred Credential) (Credential, error) {
	bad := func(problem string) (Credential, error) {
		return cred, fmt.Errorf("%w: %s", ErrInvalidCredential, problem)
	}
	switch {
	case cred.ClientID == "":
		return bad("Client ID is empty: give the BUSINESSAPI.<uuid> or SCHOOLAPI.<uuid> id from the API account")
	case cred.KeyID == "":
		return bad("Key ID is empty: give the Key ID shown next to the downloaded private key")
	case cred.Key == nil:
		return bad("private key is missing: give the EC P-256 key downloaded with the API account")
	case cred.Key.Curve != elliptic.P256():
		return bad("private key is not on curve P-256: Apple API keys are EC P-256 (ES256)")
	}
	implied := ScopeFor(cred.ClientID)
	switch {
	case cred.Scope == "" && implied == "":
		return bad("scope is empty and the Client ID has no BUSINESSAPI./SCHOOLAPI. prefix: set Scope to business.api or school.api")
	case cred.Scope == "":
		cred.Scope = implied
	case cred.Scope != ScopeBusiness && cred.Scope != ScopeSchool:
		return bad(fmt.Sprintf("scope %q is unknown: use business.api or school.api", cred.Scope))
	case implied != "" && cred.Scope != implied:
		return bad(fmt.Sprintf("scope %q does not match Client ID prefix (expects %q): fix the scope or the Client ID", cred.Scope, implied))
	}
	return cred, nil
}

// errorBody is an OAuth error answer (RFC 6749 §5.2).
type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// apiErrors is the JSON:API error answer of Apple's API.
type apiErrors struct {
	Errors []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Code   string `json:"code"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
	} `json:"errors"`
}

// StatusError is an HTTP answer the client could not use. It never holds
// request headers, bodies or tokens; Code and Detail come from Apple's error
// body, cut to a safe length.
type StatusError struct {
	Op     string // what was being done, e.g. "request token"
	Status int
	Code   string // OAuth error or API error code, when given
	Detail string
	// ID is errors[0].id of Apple's ErrorResponse: Apple asks for it in
	// support requests.
	ID string
	// ClockSkew is how far the answer's Date was from the local clock, when
	// that is more than MaxClockSkew (the refusal is then blamed on the clock).
	ClockSkew time.Duration
	kind      error // ErrRejected or ErrUnreachable, or nil
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s: HTTP %d", e.Op, e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.ClockSkew != 0 {
		msg += "; " + SkewMessage(e.ClockSkew)
	}
	if e.ID != "" {
		msg += " (Apple error id " + e.ID + ")"
	}
	return msg
}

// SkewMessage says how far off the local clock is: skew is the remote
// clock minus the local one, reported to the minute (an HTTP Date has
// whole seconds).
func SkewMessage(skew time.Duration) string {
	dir := "behind"
	if skew < 0 {
		dir, skew = "ahead of", -skew
	}
	return fmt.Sprintf("system clock is off by %s (%s the token endpoint's): set the time (NTP) and retry",
		skew.Round(time.Minute), dir)
}

// ErrorID returns Apple's error id (errors[0].id) carried by err, or "".
func ErrorID(err error) string {
	var se *StatusError
	if errors.As(err, &se) {
		return se.ID
	}
	return ""
}

// Unwrap returns ErrRejected or ErrUnreachable when the status says which.
func (e *StatusError) Unwrap() error { return e.kind }

// clean keeps server text short and printable so it is safe in a message.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.TrimSpace(s)
}

// decodeJSON decodes an answer body; a body that is not JSON is a
// malformed answer, which counts as unreachable.
func decodeJSON(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: malformed answer: %v", ErrUnreachable, err)
	}
	return nil
}

// jsonObject reports whether body is a JSON object that decodes into v.
func jsonObject(body []byte, v any) bool {
	b := strings.TrimSpace(string(body))
	return strings.HasPrefix(b, "{") && json.Unmarshal(body, v) == nil
}
