package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/rekeyd/rekey/store"
)

// ErrNotApplied: a manual rotation, add or retry ran and failed before
// anything changed; the message holds the reason (422 not_applied).
var ErrNotApplied = errors.New("not applied; nothing was changed")

// Auth-check policies of a manual rotation or add (the payload's AuthCheck values).
const (
	AuthRequired   = "required"
	AuthBestEffort = "best-effort"
	AuthOff        = "off"
)

// CredentialRequest is the body of POST /v1/tenants (add) and
// POST /v1/tenants/{id}/rotate: a credential as a person types it in.
// PrivateKey is the PEM text; the server wipes it when the request ends.
type CredentialRequest struct {
	Name       string `json:"name"`
	ClientID   string `json:"client_id"`
	KeyID      string `json:"key_id"`
	PrivateKey Secret `json:"private_key"`
	AuthCheck  string `json:"auth_check,omitempty"` // required (default), best-effort or off
	// TokenURL and APIBaseURL are for add only: the endpoints the new tenant
	// is checked and synced against (default Apple's). A rotation uses the
	// tenant's recorded ones.
	TokenURL   string `json:"token_url,omitempty"`
	APIBaseURL string `json:"api_base_url,omitempty"`
}

// RotationAnswer is the answer of POST /v1/tenants/{id}/rotate: the rotation
// as it stands (cutover, or confirmed when the new key got a token) and the
// import that records the request.
type RotationAnswer struct {
	Rotation store.Rotation `json:"rotation"`
	Import   store.Import   `json:"import"`
}

// AddAnswer is the answer of POST /v1/tenants: the new tenant, its active
// credential and the import that records the request.
type AddAnswer struct {
	Tenant     store.Tenant     `json:"tenant"`
	Credential store.Credential `json:"credential"`
	Import     store.Import     `json:"import"`
}

// CheckAnswer is the answer of POST /v1/credentials/{id}/check: the token
// exchange's outcome (accepted, rejected or unreachable) and its reason.
type CheckAnswer struct {
	CredentialID string    `json:"credential_id"`
	Name         string    `json:"name"`
	ClientID     string    `json:"client_id"`
	KeyID        string    `json:"key_id"`
	Outcome      string    `json:"outcome"`
	Reason       string    `json:"reason,omitempty"`
	CheckedAt    time.Time `json:"checked_at"`
	LastAuthAt   time.Time `json:"last_auth_at,omitzero"` // the last accepted exchange, this one included
	// ClockSkew is set ("20m0s") when the token endpoint refused and its
	// clock is more than five minutes from ours: the outcome is then
	// unreachable, not rejected.
	ClockSkew string `json:"clock_skew,omitempty"`
	// AppleErrorID is errors[0].id of Apple's answer, when it had one.
	AppleErrorID string `json:"apple_error_id,omitempty"`
}

// readCredential reads a credential body, wiping the raw bytes it read. The
// caller wipes req.PrivateKey.
func readCredential(r *http.Request) (CredentialRequest, error) {
	var req CredentialRequest
	buf, err := readSecretBody(r.Body)
	defer clear(buf)
	if err != nil {
		return req, fmt.Errorf("read request body: %w", err)
	}
	if err := json.Unmarshal(buf, &req); err != nil {
		req.PrivateKey.Wipe()
		return CredentialRequest{}, fmt.Errorf("%w: the body must be a JSON object {\"name\", \"client_id\", \"key_id\", \"private_key\", \"auth_check\"}", ErrInvalid)
	}
	switch req.AuthCheck {
	case "":
		req.AuthCheck = AuthRequired
	case AuthRequired, AuthBestEffort, AuthOff:
	default:
		return req, fmt.Errorf("%w: auth_check %q must be required, best-effort or off", ErrInvalid, req.AuthCheck)
	}
	if len(req.PrivateKey) == 0 {
		return req, fmt.Errorf("%w: private_key is missing; send the PEM text of the key downloaded from Apple", ErrInvalid)
	}
	return req, nil
}

func (s *Server) handleRotate(w http.ResponseWriter, r *http.Request) {
	req, err := readCredential(r)
	defer req.PrivateKey.Wipe()
	if err == nil && (req.TokenURL != "" || req.APIBaseURL != "") {
		err = fmt.Errorf("%w: token_url and api_base_url are for add; a rotation uses the tenant's endpoints", ErrInvalid)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	v, err := s.cfg.Backend.Rotate(r.Context(), r.PathValue("id"), req)
	answer(w, v, err)
}

func (s *Server) handleAdd(w http.ResponseWriter, r *http.Request) {
	req, err := readCredential(r)
	defer req.PrivateKey.Wipe()
	if err != nil {
		writeError(w, err)
		return
	}
	v, err := s.cfg.Backend.Add(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func (s *Server) handleCheck(w http.ResponseWriter, r *http.Request) {
	v, err := s.cfg.Backend.Check(r.Context(), r.PathValue("id"))
	answer(w, v, err)
}

func (s *Server) handleRetry(w http.ResponseWriter, r *http.Request) {
	v, err := s.cfg.Backend.Retry(r.Context(), r.PathValue("id"))
	answer(w, v, err)
}
