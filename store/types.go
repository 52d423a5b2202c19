package store

import (
	"encoding/json"
	"errors"
	"time"
)

// Sentinel errors callers branch on. Every error the store returns that is
// one of these wraps it, so errors.Is works.
var (
	// ErrNotFound: the tenant, credential, import or rotation does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvariant: the operation would break a rule the schema enforces
	// (a second active credential, a second unfinished rotation, ...).
	ErrInvariant = errors.New("store invariant refused the change")
	// ErrImportConflict: an ImportID already recorded with different content.
	ErrImportConflict = errors.New("import id already recorded with different content")
	// ErrState: the object is not in a state that allows the operation
	// (confirming a rotation that failed, rolling back without a previous credential).
	ErrState = errors.New("wrong state for this operation")
	// ErrNewerSchema: the database was written by a newer rekey; it is left untouched.
	ErrNewerSchema = errors.New("database schema is newer than this rekey")
	// ErrNotDatabase: the file is not a SQLite database (or is damaged); it is left untouched.
	ErrNotDatabase = errors.New("file is not a rekey database")
	// ErrSealKey: the sealing key file seal.key is missing while sealed keys
	// exist, is not a regular file, has a mode wider than 0600 or the wrong
	// size, or does not open a sealed key. The message says which and what to do.
	ErrSealKey = errors.New("sealing key unusable")
	// ErrHalfState: the state folder holds the database or the sealing key
	// without the other; both must be restored from the same backup.
	ErrHalfState = errors.New("state folder holds only one of the database and the sealing key")
)

// CredState is the lifecycle state of a credential.
type CredState string

const (
	CredPending  CredState = "pending"  // staged by a rotation, not yet in use
	CredActive   CredState = "active"   // the one in use; exactly one per tenant
	CredPrevious CredState = "previous" // replaced but kept for rollback until confirmed
	CredRetired  CredState = "retired"  // history only; key material wiped
	CredFailed   CredState = "failed"   // a rotation failed before cut-over; key wiped
)

// Origin says where a credential came from.
type Origin string

const (
	OriginManaged Origin = "managed" // from a managed-preferences payload
	OriginLocal   Origin = "local"   // created locally (or its payload was removed)
)

// ImportState is the state of one import (one entry of a payload); docs/agent.md
// ("Import states") says when each is reached and what may follow it.
type ImportState string

const (
	ImportPendingUnlock  ImportState = "pending-unlock"
	ImportNeedsTarget    ImportState = "needs-target"
	ImportApplying       ImportState = "applying"
	ImportApplied        ImportState = "applied"
	ImportAlreadyPresent ImportState = "already-present"
	ImportFailed         ImportState = "failed"
	ImportWithdrawn      ImportState = "withdrawn"
	ImportSuperseded     ImportState = "superseded"
	ImportDismissed      ImportState = "dismissed" // a UI declined it
)

// Final reports whether no further transition is expected for the state.
// failed is retryable, so it is not final.
func (s ImportState) Final() bool {
	switch s {
	case ImportApplied, ImportAlreadyPresent, ImportWithdrawn, ImportSuperseded, ImportDismissed:
		return true
	}
	return false
}

// Step is the recorded step of a rotation.
type Step string

const (
	StepStaged     Step = "staged"
	StepValidated  Step = "validated"
	StepCutover    Step = "cutover"
	StepConfirmed  Step = "confirmed"
	StepFailed     Step = "failed"
	StepRolledBack Step = "rolled-back"
)

// Unfinished reports whether a rotation at this step still has work before
// cut-over (staged or validated). Only one unfinished rotation per tenant.
func (s Step) Unfinished() bool { return s == StepStaged || s == StepValidated }

// Tenant is the data context a credential gives access to. Devices and
// coverage belong to it, never to a credential.
type Tenant struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Scope      string    `json:"scope"` // business.api or school.api
	CreatedAt  time.Time `json:"created_at"`
	LastSyncAt time.Time `json:"last_sync_at,omitzero"`
	SyncCursor string    `json:"-"` // where an interrupted sync resumes
	SyncError  string    `json:"last_sync_error,omitempty"`
	// SyncPassStartedAt is when the sync pass under way began (zero when
	// none is): coverage read since then is not read again when it resumes.
	SyncPassStartedAt time.Time `json:"sync_pass_started_at,omitzero"`
	// SyncListed: the pass under way has read the whole device list.
	SyncListed bool `json:"-"`
	// SyncPausedUntil: Apple asked for a wait longer than a sync waits; the
	// pass resumes after this time.
	SyncPausedUntil time.Time    `json:"sync_paused_until,omitzero"`
	Counts          TenantCounts `json:"counts"`
	// TokenURL and APIBaseURL are the endpoints the manual add that created
	// the tenant gave (APIBaseURL "" = Apple's for the scope); both ""
	// means the tenant follows the payload's Settings.
	TokenURL   string `json:"token_url,omitempty"`
	APIBaseURL string `json:"api_base_url,omitempty"`
}

// TenantCounts are the tenant's counters, kept by the store in the
// transaction that changes the rows they count (Store.Check compares them
// with count(*)). The per-state counts are of devices still in the
// organisation; Released counts the others.
type TenantCounts struct {
	Devices  int `json:"devices"`
	Coverage int `json:"coverage"` // coverage records
	Released int `json:"released"`
	Active   int `json:"active"`
	Expired  int `json:"expired"`
	None     int `json:"none"`
	Unknown  int `json:"unknown"`
}

// Credential is a credential's record. It never holds key material: the
// sealed key lives in its own column and is read only through Store.Key.
type Credential struct {
	ID          string    `json:"id"`
	TenantID    string    `json:"tenant_id"`
	Name        string    `json:"name"`
	ClientID    string    `json:"client_id"`
	KeyID       string    `json:"key_id"`
	Scope       string    `json:"scope"`
	State       CredState `json:"state"`
	Origin      Origin    `json:"origin"`
	ImportID    string    `json:"import_id,omitempty"`
	HasKey      bool      `json:"has_key"` // false once wiped
	CreatedAt   time.Time `json:"created_at"`
	ActivatedAt time.Time `json:"activated_at,omitzero"`
	RetiredAt   time.Time `json:"retired_at,omitzero"`
	LastAuthAt  time.Time `json:"last_auth_at,omitzero"` // last accepted token exchange
}

// NewCredential is what a caller hands the store to add or stage a credential.
// KeyPEM is the private key as PEM; the store seals it and the caller should
// wipe its copy afterwards.
type NewCredential struct {
	Name     string
	ClientID string
	KeyID    string
	Scope    string
	KeyPEM   []byte
	Origin   Origin
	ImportID string
	// TokenURL and APIBaseURL are recorded on the tenant AddCredential
	// creates ("" = Apple's default); Stage ignores them.
	TokenURL   string
	APIBaseURL string
}

// Import is one entry of a payload, as recorded before anything acts on it.
type Import struct {
	ID           string      `json:"id"`   // the ImportID
	Hash         string      `json:"hash"` // hex SHA-256 of the entry's content
	Source       string      `json:"source"`
	Name         string      `json:"name"`   // CredentialName
	Intent       string      `json:"intent"` // add | update | auto, as given
	Target       string      `json:"target,omitempty"`
	State        ImportState `json:"state"`
	Reason       string      `json:"reason,omitempty"`
	Attempts     int         `json:"attempts"`
	TenantID     string      `json:"tenant_id,omitempty"`     // set once decided or applied
	CredentialID string      `json:"credential_id,omitempty"` // the credential it created
	ClientID     string      `json:"client_id,omitempty"`     // known once decrypted
	KeyID        string      `json:"key_id,omitempty"`
	CreatedAt    time.Time   `json:"created_at"`
	UpdatedAt    time.Time   `json:"updated_at"`
}

// Rotation is the journal of one update: its current step and what it swaps.
type Rotation struct {
	ID               string    `json:"id"`
	TenantID         string    `json:"tenant_id"`
	ImportID         string    `json:"import_id"`
	FromCredentialID string    `json:"from_credential_id"`
	ToCredentialID   string    `json:"to_credential_id"`
	Step             Step      `json:"step"`
	Reason           string    `json:"reason,omitempty"`
	StartedAt        time.Time `json:"started_at"`
	UpdatedAt        time.Time `json:"updated_at"`
}

// Coverage states of a device, from its records (docs/apple.md).
const (
	CoverageActive  = "active"  // a record is ACTIVE and has not ended
	CoverageExpired = "expired" // only inactive or ended records
	CoverageNone    = "none"    // Apple lists no coverage
	CoverageUnknown = "unknown" // never read, or the last read failed
)

// Device is one organisation device of a tenant, keyed by serial number.
type Device struct {
	Serial        string          `json:"serial"`
	AppleID       string          `json:"apple_id,omitempty"` // Apple's orgDevices id
	Model         string          `json:"model,omitempty"`
	ProductFamily string          `json:"product_family,omitempty"`
	Status        string          `json:"status,omitempty"`
	Attrs         json.RawMessage `json:"attrs,omitempty"` // the rest of Apple's attributes
	// CoverageState is one of CoverageActive, CoverageExpired, CoverageNone,
	// CoverageUnknown. On input an empty state keeps the stored one.
	CoverageState string `json:"coverage_state"`
	// CoverageEnd is the latest end date of its records; zero when it has
	// none or an active record is open-ended.
	CoverageEnd       time.Time  `json:"coverage_end,omitzero"`
	CoverageCheckedAt time.Time  `json:"coverage_checked_at,omitzero"` // zero: never read
	ReleasedAt        time.Time  `json:"released_at,omitzero"`         // zero while in the organisation
	Coverage          []Coverage `json:"coverage,omitempty"`           // filled by Devices and ListDevices
	UpdatedAt         time.Time  `json:"updated_at"`
	// RefreshRank is its place in the refresh order of the sync pass under
	// way (CoverageDue only).
	RefreshRank int64 `json:"-"`
}

// Coverage is one AppleCare/warranty record of a device, keyed by (serial,
// id): Apple gives every device under one AppleCare+ agreement the same id.
// Dates are RFC 3339; empty when Apple sends none (EndDate of an open-ended
// subscription, ContractCancelDate of a record never cancelled).
type Coverage struct {
	ID                 string          `json:"id"`
	Serial             string          `json:"serial"`
	Description        string          `json:"description,omitempty"`
	Status             string          `json:"status,omitempty"`       // ACTIVE or INACTIVE
	PaymentType        string          `json:"payment_type,omitempty"` // ABE_SUBSCRIPTION, PAID_UP_FRONT, SUBSCRIPTION, NONE
	AgreementNumber    string          `json:"agreement_number,omitempty"`
	IsRenewable        bool            `json:"is_renewable"`
	IsCanceled         bool            `json:"is_canceled"`
	ContractCancelDate string          `json:"contract_cancel_date,omitempty"`
	StartDate          string          `json:"start_date,omitempty"`
	EndDate            string          `json:"end_date,omitempty"`
	Attrs              json.RawMessage `json:"attrs,omitempty"`
}

// DeviceCoverage is the result of reading one device's coverage: the full
// list of its records (empty: Apple lists none), or Failed when the read
// failed (the state becomes unknown and the stored records stay).
type DeviceCoverage struct {
	Serial  string
	Records []Coverage
	Failed  bool
}

// Event is one entry of the append-only audit log, and the unit the API
// streams. It never carries secrets.
type Event struct {
	Seq          int64             `json:"seq"`
	Time         time.Time         `json:"time"`
	Kind         EventKind         `json:"kind"` // one of the kinds in events.go
	TenantID     string            `json:"tenant_id,omitempty"`
	ImportID     string            `json:"import_id,omitempty"`
	CredentialID string            `json:"credential_id,omitempty"`
	RotationID   string            `json:"rotation_id,omitempty"`
	Message      string            `json:"message"`
	Fields       map[string]string `json:"fields,omitempty"`
}

// Problem is one broken rule found by Store.Check.
type Problem struct {
	Check   string `json:"check"`   // e.g. "one-active-credential"
	Subject string `json:"subject"` // the tenant, credential or rotation concerned
	Message string `json:"message"`
}
