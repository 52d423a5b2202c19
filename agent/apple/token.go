package apple

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// Outcome classifies a token exchange.
type Outcome string

const (
	// Accepted: Apple issued a token for the credential.
	Accepted Outcome = "accepted"
	// Rejected: Apple explicitly said the credential is bad.
	Rejected Outcome = "rejected"
	// Unreachable: no verdict (network, timeout, 5xx, rate limit, malformed answer).
	Unreachable Outcome = "unreachable"
)

// CheckResult is the verdict of Check. Reason is for people and never holds
// key material, the assertion or the token. Err is nil when Accepted and
// otherwise wraps ErrRejected or ErrUnreachable.
type CheckResult struct {
	Outcome Outcome
	Reason  string
	Err     error
	// ClockSkew is set when the token endpoint refused the assertion and its
	// Date header is more than MaxClockSkew from the local clock: the
	// outcome is then Unreachable, never Rejected, for a good key must not be
	// refused because of a wrong clock. Positive: the local clock is behind.
	ClockSkew time.Duration
	// ErrorID is errors[0].id of Apple's answer, when it had one: Apple asks
	// for it in support requests.
	ErrorID string
}

// maxTokenBody caps what is read from the token endpoint.
const maxTokenBody = 64 << 10

// oauthRejections are the RFC 6749 §5.2 error codes that mean "this
// credential, as sent, will not get a token".
var oauthRejections = map[string]bool{
	"invalid_client":         true,
	"invalid_grant":          true,
	"unauthorized_client":    true,
	"invalid_scope":          true,
	"invalid_request":        true,
	"unsupported_grant_type": true,
}

// Check exchanges a fresh client assertion for a token, bypassing the
// cache, and classifies the answer. A token it obtains is cached for Sync.
func (c *Client) Check(ctx context.Context, cred Credential) CheckResult {
	_, err := c.fetchToken(ctx, cred, nil)
	var skew time.Duration
	if se := (*StatusError)(nil); errors.As(err, &se) {
		skew = se.ClockSkew
	}
	switch {
	case err == nil:
		return CheckResult{Outcome: Accepted, Reason: "the token endpoint issued a token"}
	case errors.Is(err, ErrRejected):
		return CheckResult{Outcome: Rejected, Reason: err.Error(), Err: err, ErrorID: ErrorID(err)}
	default:
		if !errors.Is(err, ErrUnreachable) {
			err = fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		return CheckResult{Outcome: Unreachable, Reason: err.Error(), Err: err, ClockSkew: skew, ErrorID: ErrorID(err)}
	}
}

// Assertion signs a client assertion for cred at now. It is exported for
// tools that want to inspect the JWT; the result is a secret for its lifetime.
func (c *Client) Assertion(cred Credential, now time.Time) (string, error) {
	cred, err := resolve(cred)
	if err != nil {
		return "", err
	}
	return c.assertion(cred, now)
}

func (c *Client) assertion(cred Credential, now time.Time) (string, error) {
	life := orDefault(c.AssertionLifetime, DefaultAssertionLifetime)
	// MapClaims keeps aud a single string, as in Apple's documentation
	// (RegisteredClaims would encode it as a one-element array).
	claims := jwt.MapClaims{
		"iss": cred.ClientID,
		"sub": cred.ClientID,
		"aud": Audience,
		"iat": now.Add(-IssuedAtBackdate).Unix(),
		"exp": now.Add(life).Unix(),
		"jti": uuid.NewString(),
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = cred.KeyID
	s, err := t.SignedString(cred.Key)
	if err != nil {
		return "", fmt.Errorf("sign client assertion: %w", err)
	}
	return s, nil
}

// bearer returns a cached token for cred, or fetches one paid from b.
func (c *Client) bearer(ctx context.Context, cred Credential, b *Budget) (string, error) {
	key, err := keyFor(c.tokenURL(), cred)
	if err != nil {
		return "", err
	}
	cached := func() (string, bool) {
		c.mu.Lock()
		defer c.mu.Unlock()
		t, ok := c.tokens[key]
		return t.value, ok && c.now().Before(t.until)
	}
	if v, ok := cached(); ok {
		return v, nil
	}
	// One fetch at a time per credential, so workers that miss together
	// share one token; other credentials are not held up.
	c.mu.Lock()
	if c.fetching == nil {
		c.fetching = map[cacheKey]*sync.Mutex{}
	}
	fm, ok := c.fetching[key]
	if !ok {
		fm = new(sync.Mutex)
		c.fetching[key] = fm
	}
	c.mu.Unlock()
	fm.Lock()
	defer fm.Unlock()
	if v, ok := cached(); ok {
		return v, nil
	}
	return c.fetchToken(ctx, cred, b)
}

// invalidate drops the cached token for cred if it is still value.
func (c *Client) invalidate(cred Credential, value string) {
	key, err := keyFor(c.tokenURL(), cred)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tokens[key].value == value {
		delete(c.tokens, key)
	}
}

func keyFor(tokenURL string, cred Credential) (cacheKey, error) {
	cred, err := resolve(cred)
	if err != nil {
		return cacheKey{}, err
	}
	pub, err := cred.Key.PublicKey.Bytes()
	if err != nil {
		return cacheKey{}, fmt.Errorf("%w: encode public key: %v", ErrInvalidCredential, err)
	}
	return cacheKey{tokenURL, cred.ClientID, cred.KeyID, cred.Scope, string(pub)}, nil
}

// fetchToken exchanges a new assertion for a token, paid from b (nil:
// unpaced), retrying 429/5xx and network errors, and caches it.
func (c *Client) fetchToken(ctx context.Context, cred Credential, b *Budget) (string, error) {
	cred, err := resolve(cred)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrRejected, err)
	}
	key, err := keyFor(c.tokenURL(), cred)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrRejected, err)
	}
	var tok token
	err = c.retry(ctx, b, "request token", func() (int, http.Header, error) {
		t, status, hdr, xerr := c.exchange(ctx, cred)
		tok = t
		return status, hdr, xerr
	})
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	if c.tokens == nil {
		c.tokens = map[cacheKey]token{}
	}
	c.tokens[key] = tok
	c.mu.Unlock()
	return tok.value, nil
}

// tokenAnswer is the token endpoint's success body.
type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

// exchange makes one token request. It returns the HTTP status (0 for a
// transport error) so retry can decide, and an error that never holds the
// assertion or the token.
func (c *Client) exchange(ctx context.Context, cred Credential) (token, int, http.Header, error) {
	now := c.now()
	assertion, err := c.assertion(cred, now)
	if err != nil {
		return token{}, 0, nil, err
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"client_id":             {cred.ClientID},
		"client_assertion_type": {AssertionType},
		"client_assertion":      {assertion},
		"scope":                 {cred.Scope},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.tokenURL(), strings.NewReader(form.Encode()))
	if err != nil {
		return token{}, 0, nil, fmt.Errorf("%w: build token request: check TokenURL: %v", ErrUnreachable, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return token{}, 0, nil, &netError{op: "request token", err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenBody))
	if err != nil {
		return token{}, 0, nil, fmt.Errorf("%w: read token answer: %v", ErrUnreachable, err)
	}
	if resp.StatusCode != http.StatusOK {
		e := tokenStatusError(resp.StatusCode, body)
		blameClock(e, resp.Header, now)
		return token{}, resp.StatusCode, resp.Header, e
	}
	var ans tokenAnswer
	if err := decodeJSON(body, &ans); err != nil {
		return token{}, resp.StatusCode, resp.Header, fmt.Errorf("request token: %w", err)
	}
	if ans.AccessToken == "" || (ans.TokenType != "" && !strings.EqualFold(ans.TokenType, "bearer")) {
		return token{}, resp.StatusCode, resp.Header,
			fmt.Errorf("request token: %w: malformed answer: no bearer access_token", ErrUnreachable)
	}
	life := defaultTokenLifetime
	if ans.ExpiresIn > 0 {
		// Clamped so a silly value can neither overflow nor pin a token for days.
		life = time.Duration(min(ans.ExpiresIn, 86400)) * time.Second
	}
	margin := min(tokenMargin, life/4)
	return token{value: ans.AccessToken, until: now.Add(life - margin)}, resp.StatusCode, resp.Header, nil
}

// blameClock turns a refusal into "unreachable" when the answer's Date
// header is more than MaxClockSkew from now: Apple answers invalid_client
// for every assertion problem, a wrong system clock included, and a good
// key must not be taken for a bad one.
func blameClock(e *StatusError, hdr http.Header, now time.Time) {
	date, err := http.ParseTime(hdr.Get("Date"))
	if err != nil || !errors.Is(e, ErrRejected) {
		return
	}
	if skew := date.Sub(now); skew > MaxClockSkew || skew < -MaxClockSkew {
		e.ClockSkew = skew.Round(time.Second)
		e.kind = ErrUnreachable
	}
}

// tokenStatusError classifies a non-200 answer of the token endpoint:
// 400/401 with an OAuth error code is a rejection; 401 without a body is
// one too; everything else (404, 429, 5xx, an HTML error page) is no verdict.
func tokenStatusError(status int, body []byte) *StatusError {
	e := &StatusError{Op: "request token", Status: status, kind: ErrUnreachable}
	var eb errorBody
	parsed := jsonObject(body, &eb) && eb.Error != ""
	if parsed {
		e.Code, e.Detail = clean(eb.Error), clean(eb.Description)
	}
	var ae apiErrors // a gateway in front of the endpoint may answer in the API's dialect
	if !parsed && jsonObject(body, &ae) && len(ae.Errors) > 0 {
		e.ID, e.Code, e.Detail = clean(ae.Errors[0].ID), clean(ae.Errors[0].Code), clean(ae.Errors[0].Detail)
	}
	switch {
	case (status == 400 || status == 401) && parsed && oauthRejections[eb.Error]:
		e.kind = ErrRejected
	case status == 401 && !parsed:
		e.kind = ErrRejected
	case status == 404 || status == 405:
		e.Detail = "no token endpoint at this address: check TokenURL"
	}
	return e
}
