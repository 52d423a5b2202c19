package store

// EventKind names what an audit event records. Every kind the code writes is
// declared here, once; docs/api.md lists each with its fields.
type EventKind string

// Event kinds. The store writes the credential and rotation kinds in the
// transaction that makes them true; the agent writes the others through
// AppendEvent. sync.progress is fanned out to API subscribers only, never
// recorded.
const (
	EvSourceRead    EventKind = "source.read"    // a payload was read; fields: entries
	EvSourceRefused EventKind = "source.refused" // a payload or passphrase file was refused

	EvImportRecorded EventKind = "import.recorded" // a payload entry was recorded as an import
	EvImportInvalid  EventKind = "import.invalid"  // a payload entry was refused
	EvImportConflict EventKind = "import.conflict" // an ImportID came back with different content
	EvImportState    EventKind = "import.state"    // an import moved to another state; fields: state

	EvRotationStaged    EventKind = "rotation.staged"    // Stage: a new credential is pending
	EvRotationValidated EventKind = "rotation.validated" // Validated: the pending credential passed its check
	EvRotationCutover   EventKind = "rotation.cutover"   // Cutover: the new credential is active
	EvRotationConfirmed EventKind = "rotation.confirmed" // Confirm: the previous credential is retired
	EvRotationFailed    EventKind = "rotation.failed"    // FailRotation: ended before cut-over
	EvRotationResumed   EventKind = "rotation.resumed"   // the agent resumed an unfinished rotation: at start, or a kept staged one at a retry

	EvCredentialAdded    EventKind = "credential.added"    // AddCredential: a new tenant with its active credential
	EvCredentialRetired  EventKind = "credential.retired"  // Confirm without a rotation to confirm
	EvCredentialReleased EventKind = "credential.released" // its payload entry was removed; it stays, owned locally
	EvTenantRollback     EventKind = "tenant.rollback"     // Rollback: active and previous swapped
	EvAuthCheck          EventKind = "auth.check"          // a new credential's token exchange was tried

	EvSyncStarted  EventKind = "sync.started"  // a tenant's device sync began
	EvSyncProgress EventKind = "sync.progress" // counts so far; fanned out only
	EvSyncFinished EventKind = "sync.finished" // the sync completed
	EvSyncFailed   EventKind = "sync.failed"   // the sync stopped; the reason is in Message, Apple's error id in apple_error_id
	// EvSyncRestarted: Apple refused the stored device list cursor; the list
	// is read again from the first page (fields: apple_error_id).
	EvSyncRestarted EventKind = "sync.restarted"
	// EvSyncPaused: Apple asked for a wait longer than a sync waits; the
	// pass resumes after it (fields: until, apple_error_id).
	EvSyncPaused EventKind = "sync.paused"
)

// EventKinds is every declared kind, in the order of docs/api.md.
var EventKinds = []EventKind{
	EvSourceRead, EvSourceRefused,
	EvImportRecorded, EvImportInvalid, EvImportConflict, EvImportState,
	EvRotationStaged, EvRotationValidated, EvRotationCutover, EvRotationConfirmed, EvRotationFailed, EvRotationResumed,
	EvCredentialAdded, EvCredentialRetired, EvCredentialReleased, EvTenantRollback, EvAuthCheck,
	EvSyncStarted, EvSyncProgress, EvSyncFinished, EvSyncFailed, EvSyncRestarted, EvSyncPaused,
}
