package store

import (
	"context"
	"fmt"
	"time"
)

// Joined steps: two or more recorded steps in one transaction, so one
// fsync instead of one per step. Each is offered only where no state
// between the joined steps is needed for recovery: a crash leaves the
// state before the first step or after the last, and both are recoverable
// (docs/store.md, "Joined steps").

// RecordImportLogged is RecordImport that writes, in the same transaction,
// the events in lead first (what led to the import, e.g. source.read) and
// then the import.recorded event when the import is new. It returns the
// events written, in order. On any error nothing is written.
func (s *Store) RecordImportLogged(ctx context.Context, im Import, lead ...Event) (Import, []Event, error) {
	im, err := importDefaults(im)
	if err != nil {
		return Import{}, nil, err
	}
	var out Import
	var evs []Event
	err = s.write(ctx, "record import", func(tx *stx, now time.Time) error {
		evs = evs[:0]
		for _, e := range lead {
			e, err := insertEvent(ctx, tx, now, e)
			if err != nil {
				return err
			}
			evs = append(evs, e)
		}
		var created bool
		var err error
		if out, created, err = recordImport(ctx, tx, now, im); err != nil || !created {
			return err
		}
		e, err := insertEvent(ctx, tx, now, Event{Kind: EvImportRecorded, ImportID: out.ID,
			Message: fmt.Sprintf("import %q recorded", out.Name)})
		evs = append(evs, e)
		return err
	})
	if err != nil {
		return Import{}, nil, err
	}
	return out, evs, nil
}

// oweWipe notes, after a joined cut-over that retired an older previous
// credential (its event names it), that the WAL still holds the wiped key.
// The joined methods leave the checkpoint (wipe.go) to FinishWipes, which
// the caller runs before it announces the cut-over (the next write, and the
// next Open, pay it too). It costs nothing when no key was retired, the
// usual case on the way from a push to the cut-over event.
func (s *Store) oweWipe(evs []Event) {
	for _, e := range evs {
		if e.Kind == EvRotationCutover && e.Fields["retired"] != "" {
			s.wipeOwed.Store(true)
		}
	}
}

// FinishWipes checkpoints and truncates the WAL when a wipe left key
// material in it (after ValidateAndCutover or StageAndCutover retired a
// credential, or a checkpoint a reader kept from completing).
func (s *Store) FinishWipes(ctx context.Context) { s.payWipeDebt(ctx) }

// ValidateAndCutover is Validated then Cutover in one transaction, for a
// rotation whose credential passed validation after it was staged. It
// writes the events in lead first (what validated it, e.g. auth.check) and
// returns the events written in order: lead, rotation.validated (unless the
// rotation was validated already), rotation.cutover and, for a rotation of
// an import, import.state (applied). A crash leaves the
// rotation staged (failed and retried by recovery) or cut over. Call
// FinishWipes after it (oweWipe).
func (s *Store) ValidateAndCutover(ctx context.Context, rotationID string, lead ...Event) ([]Event, error) {
	var evs []Event
	err := s.write(ctx, "validate and cut over", func(tx *stx, now time.Time) error {
		evs = evs[:0]
		for _, e := range lead {
			e, err := insertEvent(ctx, tx, now, e)
			if err != nil {
				return err
			}
			evs = append(evs, e)
		}
		validated, err := validate(ctx, tx, now, rotationID)
		if err != nil {
			return err
		}
		if validated.Kind != "" {
			evs = append(evs, validated)
		}
		return cutoverApplied(ctx, tx, now, rotationID, &evs)
	})
	if err != nil {
		return nil, err
	}
	s.oweWipe(evs)
	return evs, nil
}

// appliedEvent writes, in the transaction that applied an import (a
// cut-over, or an add), the event of the import's move to applied, when
// there is an import; reason says what happened to its credential.
func appliedEvent(ctx context.Context, tx *stx, now time.Time, importID, tenantID, reason string, evs *[]Event) error {
	if importID == "" {
		return nil
	}
	e, err := insertEvent(ctx, tx, now, Event{Kind: EvImportState, ImportID: importID, TenantID: tenantID,
		Message: "import applied: " + reason, Fields: map[string]string{"state": string(ImportApplied)}})
	*evs = append(*evs, e)
	return err
}

// StageAndCutover is Stage, Validated and Cutover in one transaction, for a
// credential that needs no check between staging and validation (the auth
// check is off). It returns the rotation and the new credential as they
// were staged, and the rotation.staged, rotation.validated,
// rotation.cutover and (for a rotation of an import) import.state events in
// that order. A crash leaves the import as it
// was (retried from the payload) or the rotation cut over. Call FinishWipes
// after it (oweWipe).
func (s *Store) StageAndCutover(ctx context.Context, tenantID string, nc NewCredential) (Rotation, Credential, []Event, error) {
	if err := checkNew(nc); err != nil {
		return Rotation{}, Credential{}, nil, fmt.Errorf("stage and cut over: %w", err)
	}
	var r Rotation
	var c Credential
	var evs []Event
	err := s.write(ctx, "stage and cut over", func(tx *stx, now time.Time) error {
		var staged, validated Event
		var err error
		if r, c, staged, err = s.stage(ctx, tx, now, tenantID, nc); err != nil {
			return err
		}
		if validated, err = validate(ctx, tx, now, r.ID); err != nil {
			return err
		}
		evs = []Event{staged, validated}
		return cutoverApplied(ctx, tx, now, r.ID, &evs)
	})
	if err != nil {
		return Rotation{}, Credential{}, nil, err
	}
	s.oweWipe(evs)
	return r, c, evs, nil
}

// SetOriginLogged is SetOrigin that writes ev (credential.released) in the
// same transaction, and returns it.
func (s *Store) SetOriginLogged(ctx context.Context, credentialID string, origin Origin, ev Event) (Event, error) {
	var out Event
	err := s.write(ctx, "set origin", func(tx *stx, now time.Time) error {
		res, err := tx.ExecContext(ctx, `UPDATE credentials SET origin = ? WHERE id = ?`, string(origin), credentialID)
		if err != nil {
			return err
		}
		if err := mustAffect(res, "credential", credentialID); err != nil {
			return err
		}
		out, err = insertEvent(ctx, tx, now, ev)
		return err
	})
	return out, err
}
