// Package appletest runs a local fake of Apple's Business/School Manager
// API over real HTTP: it verifies ES256 client assertions, issues bearer
// tokens, serves generated devices and AppleCare coverage in Apple's
// documented shapes, and fails on request for tests and benchmarks.
package appletest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/rekeyd/rekey/agent/apple"
)

// Endpoint names what a Fault applies to.
type Endpoint string

const (
	TokenEndpoint    Endpoint = "token"    // POST /auth/oauth2/token
	DevicesEndpoint  Endpoint = "devices"  // GET /v1/orgDevices
	CoverageEndpoint Endpoint = "coverage" // GET /v1/orgDevices/{id}/appleCareCoverage
)

// Mode is how a faulty request is answered.
type Mode string

const (
	RateLimited   Mode = "rate-limited"   // 429 with Fault.RetryAfter
	ServerError   Mode = "server-error"   // 503
	Malformed     Mode = "malformed"      // 200 with a body that is not JSON
	InvalidClient Mode = "invalid-client" // 400 {"error":"invalid_client"}
	Unauthorized  Mode = "unauthorized"   // 401 (API: NOT_AUTHORIZED)
	NotFound      Mode = "not-found"      // 404 (API: NOT_FOUND)
	Hang          Mode = "hang"           // no answer until the client gives up
)

// Fault makes the next Times matching requests fail with Mode.
type Fault struct {
	Endpoint   Endpoint
	Mode       Mode
	Times      int    // how many requests fail; 0 means 1, negative means all
	RetryAfter string // Retry-After header for RateLimited: seconds or an HTTP date
	DeviceID   string // coverage only: fail just this device ("" = any)
	Skip       int    // let this many matching requests through first
}

// Stats counts what the server saw.
type Stats struct {
	TokenRequests    int
	TokensIssued     int
	DeviceRequests   int
	CoverageRequests int
	Unauthorized     int // API requests refused for a missing, unknown or expired token
	MaxInFlight      int // most coverage requests handled at once
	APIRequests      int // device list and coverage requests, throttled ones included
	Throttled        int // API requests answered 429 by the rate limit (SetRateLimit)
	CursorsRefused   int // device list requests refused for an expired cursor
}

// Key is a generated API credential registered with the server.
type Key struct {
	ClientID string
	KeyID    string
	Scope    string
	Private  *ecdsa.PrivateKey
	PEM      []byte // SEC 1 "EC PRIVATE KEY", as Apple's download
}

type registered struct {
	keyID string
	pub   *ecdsa.PublicKey
}

type issued struct {
	clientID string
	until    time.Time
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	srv *httptest.Server

	mu          sync.Mutex
	clock       apple.Clock // nil: the real clock
	lifetime    time.Duration
	creds       map[string]registered
	jtis        map[string]bool
	tokens      map[string]issued
	devices     int
	faults      []*Fault
	stats       Stats
	rejections  []string
	inFlight    int
	limit       *bucket
	coverageLog []string
	cursorGen   int          // cursors of older generations are expired
	released    map[int]bool // devices that left the organisation
	closing     chan struct{}
	closeOnce   sync.Once
}

// New starts a fake on a loopback port; call Close when done (in a test:
// t.Cleanup(srv.Close)).
func New() *Server {
	s := &Server{
		lifetime: time.Hour,
		creds:    map[string]registered{},
		jtis:     map[string]bool{},
		tokens:   map[string]issued{},
		released: map[int]bool{},
		closing:  make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /auth/oauth2/token", s.token)
	mux.HandleFunc("GET /v1/orgDevices", s.listDevices)
	mux.HandleFunc("GET /v1/orgDevices/{id}/appleCareCoverage", s.coverage)
	s.srv = httptest.NewServer(s.dated(mux))
	return s
}

// dated writes the Date header from the server's clock, so a client can
// compare it with its own, as with Apple's token endpoint.
func (s *Server) dated(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		now := s.now()
		s.mu.Unlock()
		w.Header().Set("Date", now.UTC().Format(http.TimeFormat))
		h.ServeHTTP(w, r)
	})
}

// Close stops the server.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.srv.Close()
	})
}

// URL is the server's base URL.
func (s *Server) URL() string { return s.srv.URL }

// TokenURL is the token endpoint to give the client.
func (s *Server) TokenURL() string { return s.srv.URL + "/auth/oauth2/token" }

// APIBaseURL is the API base to give the client.
func (s *Server) APIBaseURL() string { return s.srv.URL }

// RegisterCredential makes the server accept assertions from clientID
// signed by the private half of pub under keyID. The scope a client may ask
// for follows its prefix, as apple.ScopeFor says.
func (s *Server) RegisterCredential(clientID, keyID string, pub *ecdsa.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.creds[clientID] = registered{keyID: keyID, pub: pub}
}

// NewCredential generates a P-256 key with fresh ids for scope
// (apple.ScopeBusiness or apple.ScopeSchool) and registers it.
func (s *Server) NewCredential(scope string) (Key, error) {
	k, err := GenerateKey(apple.ClientIDPrefix(scope) + uuid.NewString())
	if err != nil {
		return Key{}, err
	}
	s.RegisterCredential(k.ClientID, k.KeyID, &k.Private.PublicKey)
	return k, nil
}

// GenerateKey makes a P-256 key with a fresh Key ID for clientID (a fresh
// business Client ID when empty), PEM-encoded as Apple's download is. It
// registers nothing: pass it to RegisterCredential to make the server accept
// it (for an existing Client ID, that replaces the client's old key).
func GenerateKey(clientID string) (Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		return Key{}, fmt.Errorf("encode key: %w", err)
	}
	if clientID == "" {
		clientID = apple.ClientIDPrefixBusiness + uuid.NewString()
	}
	scope := apple.ScopeFor(clientID)
	if scope == "" {
		scope = apple.ScopeBusiness
	}
	return Key{
		ClientID: clientID,
		KeyID:    uuid.NewString(),
		Scope:    scope,
		Private:  priv,
		PEM:      pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}),
	}, nil
}

// SetDevices sets how many devices the organisation has.
func (s *Server) SetDevices(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.devices = n
}

// SetClock sets the server's clock, used for iat/exp checks and token expiry.
func (s *Server) SetClock(c apple.Clock) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock = c
}

// now reads the clock; the caller holds s.mu.
func (s *Server) now() time.Time {
	if s.clock == nil {
		return time.Now()
	}
	return s.clock.Now()
}

// SetTokenLifetime sets expires_in of issued tokens (default one hour).
func (s *Server) SetTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime = d
}

// RevokeTokens forgets every issued token, so the next API call gets a 401.
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// Fail queues a fault. Faults are matched in the order they were queued.
func (s *Server) Fail(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Times == 0 {
		f.Times = 1
	}
	s.faults = append(s.faults, &f)
}

// ClearFaults drops every queued fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// CoverageLog returns the device ids of the coverage requests so far, in
// the order they arrived.
func (s *Server) CoverageLog() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.coverageLog...)
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Tokens returns every bearer token issued and still known.
func (s *Server) Tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.tokens))
	for t := range s.tokens {
		out = append(out, t)
	}
	return out
}

// Rejections returns why assertions were refused, oldest first.
func (s *Server) Rejections() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.rejections...)
}

// fault takes one use of the first fault matching endpoint and device.
func (s *Server) fault(e Endpoint, deviceID string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.Endpoint != e || (f.DeviceID != "" && f.DeviceID != deviceID) {
			continue
		}
		if f.Skip > 0 {
			f.Skip--
			return nil
		}
		if f.Times > 0 {
			f.Times--
			if f.Times == 0 {
				s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
			}
		}
		c := *f
		return &c
	}
	return nil
}

// answerFault writes the fault's answer in the endpoint's error dialect.
func answerFault(w http.ResponseWriter, r *http.Request, f *Fault, done <-chan struct{}) {
	oauth := f.Endpoint == TokenEndpoint
	switch f.Mode {
	case RateLimited:
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		apiError(w, http.StatusTooManyRequests, "RATE_LIMIT_EXCEEDED", "Too many requests")
	case ServerError:
		apiError(w, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", "Try again later")
	case Malformed:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"data": [ {"type": "orgDevices", "id": `))
	case InvalidClient:
		oauthError(w, http.StatusBadRequest, "invalid_client", "client authentication failed")
	case Unauthorized:
		if oauth {
			oauthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
			return
		}
		apiError(w, http.StatusUnauthorized, "NOT_AUTHORIZED", "Authentication credentials are missing or invalid")
	case NotFound:
		apiError(w, http.StatusNotFound, "NOT_FOUND", "The specified resource does not exist")
	case Hang:
		// Read the body so the server notices when the client hangs up.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// apiError writes Apple's ErrorResponse: errors[0].id is the id Apple asks
// for in support requests.
func apiError(w http.ResponseWriter, status int, code, detail string) {
	writeJSON(w, status, map[string]any{"errors": []map[string]string{{
		"id": uuid.NewString(), "status": fmt.Sprint(status), "code": code,
		"title": strings.ToLower(http.StatusText(status)), "detail": detail,
	}}})
}
