package agent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/agent/source"
	"github.com/rekeyd/rekey/store"
)

// waiting is an import whose entry is present in a payload right now. Only
// the ciphertext is kept; plaintext exists only while an attempt runs.
type waiting struct {
	entry     payload.Entry
	settings  payload.Settings
	source    string
	manual    bool      // a manual rotation or add: no payload entry, the credential is owned locally
	transient bool      // the last failure may pass by itself: retried with backoff
	nextTry   time.Time // when a transient failure is retried
	// unrecorded: the store could not record the entry (disk full, database
	// gone ...); the retry records it first. tries counts those retries.
	unrecorded bool
	tries      int
}

// sourceState is what the agent knows of one payload file.
type sourceState struct {
	Path     string
	User     string
	Present  bool
	Hash     string
	LastRead time.Time
	LastErr  string
	ids      map[string]bool // ImportIDs in the current content
}

// handleSnapshot acts on a payload file's new content: it records every
// entry as an import before anything else, attempts the ones that can go
// on, and withdraws waiting imports whose entry is gone.
func (a *Agent) handleSnapshot(ctx context.Context, snap source.Snapshot) {
	a.mu.Lock()
	defer a.mu.Unlock()
	defer a.changed()
	src := a.sources[snap.Path]
	if src == nil {
		src = &sourceState{Path: snap.Path, User: snap.User}
		a.sources[snap.Path] = src
	}
	src.LastRead = a.cfg.Now()
	src.Present, src.Hash = snap.Present, snap.Hash
	if snap.Err != nil {
		a.setSourceVerdict(src, snap.Err.Error())
		a.publish(ctx, store.Event{Kind: store.EvSourceRefused, Message: "payload refused: " + src.LastErr,
			Fields: map[string]string{"path": snap.Path}})
		return // a refused file is never acted on, not even to withdraw
	}
	if !snap.Present {
		a.setSourceVerdict(src, "")
		a.withdraw(ctx, src, nil)
		return
	}
	doc, err := payload.Parse(snap.Data)
	if err != nil {
		a.setSourceVerdict(src, err.Error())
		a.publish(ctx, store.Event{Kind: store.EvSourceRefused, Message: "payload refused: " + src.LastErr,
			Fields: map[string]string{"path": snap.Path}})
		return
	}
	a.setSourceVerdict(src, "")
	if snap.User == "" {
		a.syncs.setSettings(doc.Settings)
	}
	read := &store.Event{Kind: store.EvSourceRead, Message: fmt.Sprintf("payload read: %d entries", len(doc.Entries)),
		Fields: map[string]string{"path": snap.Path, "entries": strconv.Itoa(len(doc.Entries))}}
	if len(doc.Entries) == 0 || len(doc.Problems) > 0 {
		a.publish(ctx, *read)
		read = nil
	}
	for _, p := range doc.Problems {
		a.publish(ctx, store.Event{Kind: store.EvImportInvalid, Message: "payload entry refused: " + p.Error(),
			Fields: map[string]string{"path": snap.Path}})
	}
	ids := make(map[string]bool, len(doc.Entries))
	for _, e := range doc.Entries {
		ids[e.ImportID] = true
		a.recordEntry(ctx, snap.Path, doc.Settings, e, read) // the read is recorded with the first entry
		read = nil
	}
	a.withdraw(ctx, src, ids)
	src.ids = ids
}

// recordEntry records one entry as an import and attempts it when it can
// go on. A read event, when given, is recorded first in the same
// transaction (one fsync for both), or on its own if that fails.
func (a *Agent) recordEntry(ctx context.Context, path string, set payload.Settings, e payload.Entry, read *store.Event) {
	var lead []store.Event
	if read != nil {
		if read.Time.IsZero() {
			read.Time = a.cfg.Now()
		}
		lead = append(lead, *read)
	}
	imp, evs, err := a.st.RecordImportLogged(ctx, store.Import{
		ID: e.ImportID, Hash: e.Hash, Source: path, Name: e.Name,
		Intent: e.Intent, Target: e.Target, State: store.ImportPendingUnlock,
	}, lead...)
	if err != nil && read != nil {
		a.publish(ctx, *read) // the transaction that carried it failed
	}
	a.announceAll(evs) // the read, then import.recorded when the import is new
	switch {
	case errors.Is(err, store.ErrImportConflict):
		a.publish(ctx, store.Event{Kind: store.EvImportConflict, ImportID: e.ImportID,
			Message: "import id already used for different content; not applied. Give the new entry a new ImportID",
			Fields:  map[string]string{"path": path}})
		return
	case err != nil:
		a.log.Error("record import", "import", e.ImportID, "err", err)
		a.keepUnrecorded(ctx, path, set, e, err)
		return
	}
	switch imp.State {
	case store.ImportApplied, store.ImportAlreadyPresent, store.ImportSuperseded, store.ImportDismissed, store.ImportApplying:
		return // applied at most once; applying is resumed by recovery
	}
	w := a.waiting[imp.ID]
	fresh := w == nil // first sight in this run: a failed import is retried once
	if fresh {
		w = &waiting{}
		a.waiting[imp.ID] = w
	}
	w.entry, w.settings, w.source = e, set, path
	if imp.State == store.ImportWithdrawn {
		a.setImport(ctx, imp.ID, store.ImportPendingUnlock, "payload present again", "")
	}
	if imp.State == store.ImportFailed && !fresh && (!w.transient || a.cfg.Now().Before(w.nextTry)) {
		return // a lasting failure waits for a UI or a new payload; a passing one for its retry time
	}
	a.attempt(ctx, imp.ID, attemptInput{})
}

// keepUnrecorded keeps an entry the store could not record for a retry with
// backoff, and tells live subscribers why nothing happened.
func (a *Agent) keepUnrecorded(ctx context.Context, path string, set payload.Settings, e payload.Entry, cause error) {
	w := a.waiting[e.ImportID]
	if w == nil {
		w = &waiting{}
		a.waiting[e.ImportID] = w
	}
	w.entry, w.settings, w.source = e, set, path
	w.unrecorded, w.transient = true, true
	w.tries++
	w.nextTry = a.cfg.Now().Add(a.cfg.Backoff(w.tries))
	kick(a.retryKick)
	a.publishUnrecorded(ctx, e.ImportID, cause.Error()+"; retried")
}

// publishUnrecorded tells live subscribers that import id failed while the
// store could not record it: a restart records it (recovery).
func (a *Agent) publishUnrecorded(ctx context.Context, id, reason string) {
	a.publish(ctx, store.Event{Kind: store.EvImportState, ImportID: id,
		Message: "import failed (not recorded, the store is unavailable): " + reason,
		Fields:  map[string]string{"state": string(store.ImportFailed), "recorded": "false"}})
}

// withdraw marks waiting imports of src whose entry is not in keep as
// withdrawn. Credentials they created stay; they are owned locally now.
func (a *Agent) withdraw(ctx context.Context, src *sourceState, keep map[string]bool) {
	for id, w := range a.waiting {
		if w.source == src.Path && !keep[id] {
			delete(a.waiting, id) // its entry is gone: nothing to attempt
		}
	}
	imps, err := a.st.WithdrawCandidates(ctx, src.Path)
	if err != nil {
		a.log.Error("list imports", "err", err)
		return
	}
	for _, imp := range imps {
		if keep[imp.ID] {
			continue
		}
		delete(a.waiting, imp.ID)
		switch imp.State {
		case store.ImportPendingUnlock, store.ImportNeedsTarget, store.ImportFailed:
			reason := "its entry left the managed preferences before it was applied"
			a.dropLeftovers(ctx, imp.ID, "", reason)
			a.setImport(ctx, imp.ID, store.ImportWithdrawn, reason, "")
		case store.ImportApplied:
			a.release(ctx, imp)
		}
	}
}

// release hands the credential an applied import created to local
// ownership, once: a credential already local is not written again, so a
// file change costs no write per past import.
func (a *Agent) release(ctx context.Context, imp store.Import) {
	if imp.CredentialID == "" || a.released[imp.CredentialID] {
		return
	}
	c, err := a.st.Credential(ctx, imp.CredentialID)
	if err != nil {
		return
	}
	if c.Origin != store.OriginManaged {
		a.released[c.ID] = true // local already: not read again on every file change
		return
	}
	ev, err := a.st.SetOriginLogged(ctx, c.ID, store.OriginLocal, store.Event{Kind: store.EvCredentialReleased, Time: a.cfg.Now(),
		TenantID: c.TenantID, CredentialID: c.ID, ImportID: imp.ID,
		Message: fmt.Sprintf("credential %q is now owned locally: its payload entry was removed; nothing was deleted", c.Name)})
	if err != nil {
		a.log.Error("release credential", "credential", c.ID, "err", err)
		return
	}
	a.released[c.ID] = true
	a.announce(ev) // written with the change of origin
}

// setImport moves an import to state with a reason, records its tenant when
// tenantID is not "" and publishes the change.
func (a *Agent) setImport(ctx context.Context, id string, state store.ImportState, reason, tenantID string) {
	_, err := a.st.UpdateImport(ctx, id, func(imp *store.Import) error {
		imp.State, imp.Reason = state, reason
		if tenantID != "" {
			imp.TenantID = tenantID
		}
		return nil
	})
	if err != nil {
		a.log.Error("update import", "import", id, "err", err)
		return
	}
	a.publish(ctx, store.Event{Kind: store.EvImportState, ImportID: id, TenantID: tenantID,
		Message: fmt.Sprintf("import %s: %s", state, reason), Fields: map[string]string{"state": string(state)}})
}
