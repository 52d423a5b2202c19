package agent

import (
	"context"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/store"
)

// Event kinds. Every event is written to the store's audit log before it is
// fanned out, except progress events, which are fanned out only.
const (
	EvSourceRead      = "source.read"
	EvSourceRefused   = "source.refused"
	EvImportRecorded  = "import.recorded"
	EvImportInvalid   = "import.invalid"
	EvImportConflict  = "import.conflict"
	EvImportState     = "import.state"
	EvRotationStep    = "rotation.step"
	EvRotationResumed = "rotation.resumed"
	EvCredentialAdded = "credential.added"
	EvRollback        = "tenant.rollback"
	EvAuthCheck       = "auth.check"
	EvSyncStarted     = api.EventSyncStarted
	EvSyncProgress    = api.EventSyncProgress
	EvSyncFinished    = api.EventSyncFinished
	EvSyncFailed      = api.EventSyncFailed
)

// Sync events beyond the API's four: Apple refused the stored device list
// cursor and the list is read again (its error id in apple_error_id); Apple
// asked for a wait longer than a sync waits, and the pass resumes after
// until.
const (
	EvSyncRestarted = "sync.restarted"
	EvSyncPaused    = "sync.paused"
)

// EvCredentialReleased: a credential's payload entry was removed; it stays, owned locally.
const EvCredentialReleased = "credential.released"

// publish records ev in the audit log, logs it and fans it out. Event
// messages are built by the agent from non-secret fields only.
func (a *Agent) publish(ctx context.Context, ev store.Event) {
	if ev.Time.IsZero() {
		ev.Time = a.cfg.Now()
	}
	saved, err := a.st.AppendEvent(context.WithoutCancel(ctx), ev)
	if err != nil {
		a.log.Error("record event", "kind", ev.Kind, "err", err)
	} else {
		ev = saved
	}
	a.logEvent(ev)
	a.hub.Publish(ev)
	kick(a.statusKick)
}

// announce logs and fans out a fact the store already wrote to the audit
// log in the same transaction as the change (credential.added,
// tenant.rollback), so the log holds it once.
func (a *Agent) announce(ev store.Event) {
	if ev.Time.IsZero() {
		ev.Time = a.cfg.Now()
	}
	a.logEvent(ev)
	a.hub.Publish(ev)
	kick(a.statusKick)
}

// progress fans out an event without recording it (sync progress).
func (a *Agent) progress(ev store.Event) {
	if ev.Time.IsZero() {
		ev.Time = a.cfg.Now()
	}
	a.hub.Publish(ev)
}

func (a *Agent) logEvent(ev store.Event) {
	args := []any{"kind", ev.Kind}
	for _, kv := range [][2]string{{"tenant", ev.TenantID}, {"import", ev.ImportID}, {"credential", ev.CredentialID}, {"rotation", ev.RotationID}} {
		if kv[1] != "" {
			args = append(args, kv[0], kv[1])
		}
	}
	for k, v := range ev.Fields {
		args = append(args, k, v)
	}
	a.log.Info(ev.Message, args...)
}

// Subscribe returns a stream of events for the local API.
func (a *Agent) Subscribe(buffer int) (<-chan store.Event, func()) { return a.hub.Subscribe(buffer) }
