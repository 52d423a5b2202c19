// Package api serves the agent's local HTTP/JSON API on a Unix socket,
// authorising each request by the peer's credentials, and provides the typed
// client the CLI uses.
package api

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/rekeyd/rekey/store"
)

// Backend is what the server needs from the agent. Package agent implements
// it; every method must be safe for concurrent use. No value returned may
// carry a password, a key or ciphertext.
type Backend interface {
	// Status is the whole picture for GET /v1/status and the status plist.
	Status(ctx context.Context) (Status, error)
	Credentials(ctx context.Context) ([]store.Credential, error)
	Tenants(ctx context.Context) ([]store.Tenant, error)
	Imports(ctx context.Context) ([]store.Import, error)
	// Import returns one import; store.ErrNotFound when there is none.
	Import(ctx context.Context, id string) (store.Import, error)
	Rotations(ctx context.Context) ([]store.Rotation, error)
	// Devices pages a tenant's devices by serial, filtered as q says; the
	// second result is the serial to page on from ("" on the last page).
	Devices(ctx context.Context, tenantID string, q store.DeviceQuery) ([]store.Device, string, error)
	// Unlock decrypts a waiting import with req.Password and applies it,
	// honouring req.Intent and req.Target. It returns the import as it stands
	// afterwards. Errors: ErrWrongPassword, ErrPasswordRequired,
	// ErrNeedsChoice, ErrInvalid, ErrBusy, store.ErrNotFound, store.ErrState.
	// The backend must not keep req.Password: the server wipes it on return.
	Unlock(ctx context.Context, id string, req UnlockRequest) (store.Import, error)
	// Dismiss declines a waiting import (state dismissed).
	Dismiss(ctx context.Context, id string) (store.Import, error)
	// Rollback swaps a tenant's active and previous credentials; store.ErrState
	// without a previous credential.
	Rollback(ctx context.Context, tenantID string) error
	// Sync starts importing a tenant's devices and coverage in the background
	// and returns once started; ErrBusy when one is already running. Progress
	// and the outcome are published as events (store.EvSync*).
	Sync(ctx context.Context, tenantID string) error
	// Rotate replaces a tenant's active credential with req's through the
	// same four steps as a payload update (staged, validated, cutover,
	// confirmed). ErrInvalid for a bad credential or one of another scope,
	// ErrNotApplied when it failed before cut-over (nothing changed),
	// store.ErrState when the tenant already uses this key. The backend must
	// not keep req.PrivateKey: the server wipes it on return.
	Rotate(ctx context.Context, tenantID string, req CredentialRequest) (RotationAnswer, error)
	// Add adds req's credential as the active one of a new tenant; errors as Rotate.
	Add(ctx context.Context, req CredentialRequest) (AddAnswer, error)
	// Check exchanges a credential for a token now and records an accepted
	// exchange; store.ErrState when its key was wiped.
	Check(ctx context.Context, credentialID string) (CheckAnswer, error)
	// Retry attempts a failed import again from its payload entry;
	// store.ErrState when it is not failed or its entry is gone,
	// ErrNotApplied when it failed again.
	Retry(ctx context.Context, id string) (store.Import, error)
	// Subscribe returns a channel of events as they happen and a cancel
	// function. The channel holds at most buffer events; a subscriber that
	// falls behind has its channel closed (dropped) rather than blocking the
	// agent. Hub implements this.
	Subscribe(buffer int) (<-chan store.Event, func())
}

// StatusEncoder is an optional Backend capability: the status already
// encoded as GET /v1/status answers it (EncodeStatus), so a poll costs no
// encoding. The server uses it when the Backend has it.
type StatusEncoder interface {
	StatusJSON(ctx context.Context) ([]byte, error)
}

// EncodeStatus encodes st exactly as GET /v1/status answers it.
func EncodeStatus(st Status) ([]byte, error) {
	st.Tenants, st.PendingImports = nonNil(st.Tenants), nonNil(st.PendingImports)
	var b bytes.Buffer
	if err := newEncoder(&b).Encode(st); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Sentinel errors a Backend returns and the server maps to stable codes; the
// client turns codes back into them so callers can use errors.Is.
var (
	// ErrWrongPassword: the password does not decrypt the import (422 wrong_password).
	ErrWrongPassword = errors.New("wrong password")
	// ErrPasswordRequired: the import is still locked and no password was given (422 password_required).
	ErrPasswordRequired = errors.New("a password is required to unlock this import")
	// ErrNeedsChoice: the import needs an intent (add or update) and, for an
	// update, a target credential (409 needs_choice).
	ErrNeedsChoice = errors.New("choose add or update, and the credential to update")
	// ErrInvalid: the request itself is malformed (400 invalid_request).
	ErrInvalid = errors.New("invalid request")
	// ErrBusy: a rotation or sync for the tenant is already running (409 busy).
	ErrBusy = errors.New("busy with another operation")
	// ErrRateLimited: too many wrong passwords for this import; wait (429 rate_limited).
	ErrRateLimited = errors.New("too many wrong passwords; try again later")
	// ErrForbidden: the caller may not use this endpoint (403 forbidden).
	ErrForbidden = errors.New("forbidden")
	// ErrDropped: the event stream ended because the client read too slowly (events_dropped).
	ErrDropped = errors.New("event stream dropped: the client read too slowly")
	// ErrAgentNotRunning: the client found no agent on the socket.
	ErrAgentNotRunning = errors.New("the rekey agent is not running")
)

// Status is the answer of GET /v1/status and the content of the status plist.
type Status struct {
	Agent          AgentInfo       `json:"agent"`
	Source         SourceInfo      `json:"source"`
	Tenants        []TenantStatus  `json:"tenants"`
	PendingImports []store.Import  `json:"pending_imports"` // imports waiting for a UI (pending-unlock, needs-target, failed)
	LastRotation   *store.Rotation `json:"last_rotation,omitempty"`
}

// AgentInfo identifies the running agent.
type AgentInfo struct {
	Version string    `json:"version"`
	PID     int       `json:"pid"`
	UID     int       `json:"uid"`
	Started time.Time `json:"started"`
}

// SourceInfo describes the managed-preferences source the agent watches.
type SourceInfo struct {
	Path      string    `json:"path"`
	LastRead  time.Time `json:"last_read,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// TenantStatus is one tenant with its current credentials and data counts.
type TenantStatus struct {
	ID            string             `json:"id"`
	Name          string             `json:"name"`
	Scope         string             `json:"scope"`
	Active        *CredentialSummary `json:"active,omitempty"`
	Previous      *CredentialSummary `json:"previous,omitempty"`
	Devices       int                `json:"devices"`
	Coverage      int                `json:"coverage"`
	LastSync      time.Time          `json:"last_sync,omitzero"`
	LastSyncError string             `json:"last_sync_error,omitempty"`
	// Counts are the tenant's counters: released devices and, among those
	// still in the organisation, how many are in each coverage state.
	Counts store.TenantCounts `json:"counts"`
	// Freshness says how current the coverage is: the oldest read, the
	// devices never read, and those not read within the sync interval.
	Freshness store.Freshness `json:"coverage_freshness"`
}

// CredentialSummary names a credential without anything secret.
type CredentialSummary struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	ClientID string    `json:"client_id"`
	KeyID    string    `json:"key_id"`
	Since    time.Time `json:"since,omitzero"`
	LastAuth time.Time `json:"last_auth,omitzero"` // the last accepted token exchange (a check, a sync)
}

// Health is the answer of GET /v1/health, open to every local user.
type Health struct {
	Status  string `json:"status"` // "ok"
	Version string `json:"version"`
}

// UnlockRequest is the body of POST /v1/imports/{id}/unlock.
type UnlockRequest struct {
	Password Secret `json:"password,omitempty"`
	Intent   string `json:"intent,omitempty"` // "add", "update" or "" (let the agent decide)
	Target   string `json:"target,omitempty"` // credential id, name, Key ID or Client ID, for update
}

// SyncAnswer is the answer of POST /v1/tenants/{id}/sync.
type SyncAnswer struct {
	TenantID string `json:"tenant_id"`
	Started  bool   `json:"started"`
}

// DevicePage is the answer of GET /v1/tenants/{id}/devices.
type DevicePage struct {
	Devices []store.Device `json:"devices"`
	Next    string         `json:"next,omitempty"` // pass as ?after= for the next page
}

// ErrorBody is every error answer: {"error":{"code":"...","message":"..."}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the code (stable, for programs) and message (for people).
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
