package agent

import (
	"context"

	"github.com/rekeyd/rekey/store"
)

// publish records ev in the audit log, logs it and fans it out. Event
// messages are built by the agent from non-secret fields only. Kinds are
// declared in package store (store/events.go).
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
	a.changed()
	a.hub.Publish(ev)
}

// announce logs and fans out an event the store returned after writing it to
// the audit log in the same transaction as the change (credential.added,
// rotation.*, tenant.rollback), so the log holds it once. A zero Event (the
// store wrote nothing, as for a repeated Validated) is skipped.
func (a *Agent) announce(ev store.Event) {
	a.announceAll([]store.Event{ev})
}

// announceAll is announce for the events one transaction wrote, in order:
// the status is rebuilt once for all of them (they changed the store
// together) before the first goes out.
func (a *Agent) announceAll(evs []store.Event) {
	n := 0
	for _, ev := range evs {
		if ev.Kind != "" {
			a.logEvent(ev)
			n++
		}
	}
	if n == 0 {
		return
	}
	a.changed()
	for _, ev := range evs {
		if ev.Kind != "" {
			a.hub.Publish(ev)
		}
	}
}

// progress fans out an event without recording it (sync progress). The
// counts in the status moved (progressed), but the status file waits for
// the sync's end, as a page comes every few milliseconds.
func (a *Agent) progress(ev store.Event) {
	if ev.Time.IsZero() {
		ev.Time = a.cfg.Now()
	}
	a.progressed()
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
