package appletest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/rekeyd/rekey/agent/apple"
)

// What Apple's token endpoint requires.
const (
	maxAssertion = 180 * 24 * time.Hour
	clockSkew    = time.Minute
)

// token is the fake token endpoint.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.stats.TokenRequests++
	s.mu.Unlock()
	if f := s.fault(TokenEndpoint, ""); f != nil {
		answerFault(w, r, f, s.closing)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		s.refuse(w, http.StatusBadRequest, "invalid_request", "content type %q is not a form", ct)
		return
	}
	if err := r.ParseForm(); err != nil {
		s.refuse(w, http.StatusBadRequest, "invalid_request", "form does not parse")
		return
	}
	f := r.PostForm
	if g := f.Get("grant_type"); g != "client_credentials" {
		s.refuse(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type %q", g)
		return
	}
	if t := f.Get("client_assertion_type"); t != apple.AssertionType {
		s.refuse(w, http.StatusBadRequest, "invalid_request", "client_assertion_type %q", t)
		return
	}
	clientID := f.Get("client_id")
	s.mu.Lock()
	reg, ok := s.creds[clientID]
	s.mu.Unlock()
	if !ok {
		s.refuse(w, http.StatusBadRequest, "invalid_client", "client_id %q is not registered", clientID)
		return
	}
	if want := apple.ScopeFor(clientID); f.Get("scope") != want {
		s.refuse(w, http.StatusBadRequest, "invalid_scope", "scope %q, want %q", f.Get("scope"), want)
		return
	}
	if err := s.verify(f.Get("client_assertion"), clientID, reg); err != nil {
		s.refuse(w, http.StatusBadRequest, "invalid_client", "assertion: %v", err)
		return
	}
	s.issue(w, clientID)
}

// verify checks the assertion's ES256 signature with the registered key and
// every header field and claim Apple requires.
func (s *Server) verify(assertion, clientID string, reg registered) error {
	if assertion == "" {
		return errors.New("client_assertion is empty")
	}
	s.mu.Lock()
	now := s.now()
	s.mu.Unlock()
	keyfunc := func(t *jwt.Token) (any, error) {
		if typ, ok := t.Header["typ"]; ok && typ != "JWT" {
			return nil, fmt.Errorf("header typ %v", typ)
		}
		if kid, _ := t.Header["kid"].(string); kid != reg.keyID {
			return nil, fmt.Errorf("header kid %q is not the registered Key ID", kid)
		}
		return reg.pub, nil
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(assertion, claims, keyfunc,
		jwt.WithValidMethods([]string{"ES256"}),
		jwt.WithAudience(apple.Audience), jwt.WithIssuer(clientID), jwt.WithSubject(clientID),
		jwt.WithIssuedAt(), jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }), jwt.WithLeeway(clockSkew))
	if err != nil {
		return err
	}
	if aud, _ := claims.GetAudience(); len(aud) != 1 {
		return fmt.Errorf("aud has %d values, want exactly %q", len(aud), apple.Audience)
	}
	iat, _ := claims.GetIssuedAt()
	exp, _ := claims.GetExpirationTime()
	if iat == nil {
		return errors.New("iat is missing")
	}
	if life := exp.Sub(iat.Time); life <= 0 || life > maxAssertion {
		return fmt.Errorf("exp - iat is %s, want (0, 180 days]", life)
	}
	jti, _ := claims["jti"].(string)
	if jti == "" {
		return errors.New("jti is missing")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jtis[jti] {
		return fmt.Errorf("jti %s was used before", jti)
	}
	s.jtis[jti] = true
	return nil
}

func (s *Server) refuse(w http.ResponseWriter, status int, code, format string, args ...any) {
	s.mu.Lock()
	s.rejections = append(s.rejections, code+": "+fmt.Sprintf(format, args...))
	s.mu.Unlock()
	oauthError(w, status, code, "the client could not be authenticated")
}

func (s *Server) issue(w http.ResponseWriter, clientID string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	tok := hex.EncodeToString(b)
	s.mu.Lock()
	life := s.lifetime
	s.tokens[tok] = issued{clientID: clientID, until: s.now().Add(life)}
	s.stats.TokensIssued++
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int64(life / time.Second),
		"scope":        apple.ScopeFor(clientID),
	})
}

// authorized checks the bearer token of an API request.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	t, known := s.tokens[tok]
	valid := ok && known && s.now().Before(t.until)
	if !valid {
		s.stats.Unauthorized++
	}
	s.mu.Unlock()
	if !valid {
		apiError(w, http.StatusUnauthorized, "NOT_AUTHORIZED", "Authentication credentials are missing or invalid")
	}
	return valid
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
