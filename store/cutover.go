package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// retire moves a previous credential to retired and wipes its key. With
// secure_delete on, SQLite zeroes the freed bytes in the page.
func retire(ctx context.Context, tx *stx, now time.Time, credID string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE credentials SET state = 'retired', sealed_key = NULL, retired_at = ?
		WHERE id = ?`, now.UnixNano(), credID); err != nil {
		return fmt.Errorf("retire credential %s: %w", credID, err)
	}
	return nil
}

// FailRotation ends an unfinished rotation: the pending credential becomes
// failed with its key wiped, the rotation failed with reason, and its import
// (if any) failed with reason, so that it can be retried. The active
// credential and the tenant's data are not touched. It returns the
// rotation.failed event it wrote. ErrState after cut-over.
func (s *Store) FailRotation(ctx context.Context, rotationID, reason string) (Event, error) {
	var ev Event
	err := s.writeWipe(ctx, "fail rotation", func(tx *stx, now time.Time) error {
		r, err := rotationIn(ctx, tx, rotationID, StepStaged, StepValidated)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE credentials SET state = 'failed', sealed_key = NULL, retired_at = ?
			WHERE id = ?`, now.UnixNano(), r.ToCredentialID); err != nil {
			return fmt.Errorf("fail credential %s: %w", r.ToCredentialID, err)
		}
		if err := setStep(ctx, tx, now, &r, StepFailed, reason); err != nil {
			return err
		}
		if r.ImportID != "" {
			if _, err := tx.ExecContext(ctx, `UPDATE imports SET state = 'failed', reason = ?, updated_at = ? WHERE id = ?`,
				reason, now.UnixNano(), r.ImportID); err != nil {
				return fmt.Errorf("fail import %s: %w", r.ImportID, err)
			}
		}
		e := rotEvent(r, EvRotationFailed, "rotation failed before cut-over: "+reason)
		e.Fields["reason"] = reason
		ev, err = insertEvent(ctx, tx, now, e)
		return err
	})
	return ev, err
}

// Cutover makes a validated rotation's credential active in one transaction:
// an older previous credential is retired and wiped first, the active one
// becomes previous, the pending one active, the import applied, the rotation
// cutover; it writes and returns the rotation.cutover event and, for a
// rotation of an import, the import.state event of its move to applied. It
// touches credential, rotation, import and event rows only, so its cost
// does not depend on the tenant's data.
// ErrState if the rotation is not validated, or if the credential it replaces
// is no longer the active one (a rollback happened meanwhile).
func (s *Store) Cutover(ctx context.Context, rotationID string) ([]Event, error) {
	var evs []Event
	err := s.write(ctx, "cut over", func(tx *stx, now time.Time) error {
		return cutoverApplied(ctx, tx, now, rotationID, &evs)
	})
	if err != nil {
		return nil, err
	}
	s.afterCutover(ctx, evs[0])
	return evs, nil
}

// afterCutover checkpoints the WAL after a cut-over that retired an older
// previous credential (its event names it), so that the wiped key is gone
// from rekey.db-wal when the method returns (wipe.go).
func (s *Store) afterCutover(ctx context.Context, cut Event) {
	if cut.Fields["retired"] != "" {
		s.checkpointWipe(ctx)
	}
}

// cutoverApplied is cutover followed by the applied event of the rotation's
// import, if any; it appends both events to evs.
func cutoverApplied(ctx context.Context, tx *stx, now time.Time, rotationID string, evs *[]Event) error {
	cut, err := cutover(ctx, tx, now, rotationID)
	if err != nil {
		return err
	}
	*evs = append(*evs, cut)
	return appliedEvent(ctx, tx, now, cut.ImportID, cut.TenantID, "the new credential is active", evs)
}

// cutover is Cutover inside tx.
func cutover(ctx context.Context, tx *stx, now time.Time, rotationID string) (Event, error) {
	r, err := rotationIn(ctx, tx, rotationID, StepValidated)
	if err != nil {
		return Event{}, err
	}
	active, err := credIn(ctx, tx, r.TenantID, CredActive)
	if err != nil {
		return Event{}, err
	}
	if active.ID != r.FromCredentialID {
		return Event{}, fmt.Errorf("rotation %s replaces %s but %s is active now; fail it and stage again: %w",
			r.ID, r.FromCredentialID, active.ID, ErrState)
	}
	var retired string
	prev, err := credIn(ctx, tx, r.TenantID, CredPrevious)
	switch {
	case err == nil:
		if err := retire(ctx, tx, now, prev.ID); err != nil {
			return Event{}, err
		}
		retired = prev.ID
	case !errors.Is(err, ErrState):
		return Event{}, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE credentials SET state = 'previous' WHERE id = ?`, active.ID); err != nil {
		return Event{}, fmt.Errorf("demote credential %s: %w", active.ID, err)
	}
	res, err := tx.ExecContext(ctx, `UPDATE credentials SET state = 'active', activated_at = ?
		WHERE id = ? AND state = 'pending'`, now.UnixNano(), r.ToCredentialID)
	if err != nil {
		return Event{}, fmt.Errorf("activate credential %s: %w", r.ToCredentialID, err)
	}
	if err := mustAffect(res, "pending credential", r.ToCredentialID); err != nil {
		return Event{}, err
	}
	if err := setStep(ctx, tx, now, &r, StepCutover, ""); err != nil {
		return Event{}, err
	}
	if r.ImportID != "" {
		if _, err := tx.ExecContext(ctx, `UPDATE imports SET state = 'applied', reason = '', tenant_id = ?,
			credential_id = ?, updated_at = ? WHERE id = ?`, r.TenantID, r.ToCredentialID, now.UnixNano(), r.ImportID); err != nil {
			return Event{}, fmt.Errorf("apply import %s: %w", r.ImportID, err)
		}
	}
	e := rotEvent(r, EvRotationCutover, "new credential is active; the old one is kept as previous")
	if retired != "" {
		e.Fields["retired"] = retired
	}
	return insertEvent(ctx, tx, now, e)
}

// Confirm retires the tenant's previous credential and wipes its key, and
// moves the rotation that replaced it (if still at cutover) to confirmed.
// credID is the credential that obtained a token: only the tenant's active
// credential confirms. It returns the event it wrote: rotation.confirmed,
// or credential.retired when no rotation was waiting for confirmation.
// ErrState when the tenant has no previous credential, or when credID is
// not its active one (a sync that began with the previous credential and
// ended after a cut-over proves nothing about the new key), and nothing
// changes.
func (s *Store) Confirm(ctx context.Context, tenantID, credID string) (Event, error) {
	var ev Event
	err := s.writeWipe(ctx, "confirm rotation", func(tx *stx, now time.Time) error {
		prev, active, err := swapPair(ctx, tx, tenantID)
		if err != nil {
			return err
		}
		if active.ID != credID {
			return fmt.Errorf("%w: credential %s is not the active credential of tenant %s (%s); only a token for the active one confirms its rotation",
				ErrState, credID, tenantID, active.ID)
		}
		if err := retire(ctx, tx, now, prev.ID); err != nil {
			return err
		}
		e := Event{Kind: EvCredentialRetired, TenantID: tenantID, CredentialID: prev.ID,
			Message: fmt.Sprintf("credential %q retired and its key wiped", prev.Name)}
		r, err := getOne(ctx, tx, scanRot, "rotation of tenant", tenantID, cutoverRotationSQL, tenantID, prev.ID, active.ID)
		switch {
		case err == nil:
			if err := setStep(ctx, tx, now, &r, StepConfirmed, ""); err != nil {
				return err
			}
			e = rotEvent(r, EvRotationConfirmed, fmt.Sprintf("new credential confirmed; %q retired and its key wiped", prev.Name))
		case !errors.Is(err, ErrNotFound):
			return err
		}
		ev, err = insertEvent(ctx, tx, now, e)
		return err
	})
	return ev, err
}

// swapPair reads the tenant's previous and active credentials, the two that
// Confirm and Rollback act on; ErrState when the tenant has no previous.
func swapPair(ctx context.Context, tx *stx, tenantID string) (prev, active Credential, err error) {
	if prev, err = credIn(ctx, tx, tenantID, CredPrevious); err != nil {
		return prev, active, err
	}
	active, err = credIn(ctx, tx, tenantID, CredActive)
	return prev, active, err
}

// Rollback swaps the tenant's active and previous credentials. The rotation
// that made the swap's credential active goes to rolled-back; rolling back a
// rollback moves it to cutover again. It returns the tenant.rollback event it
// wrote. ErrState without a previous credential.
func (s *Store) Rollback(ctx context.Context, tenantID string) (Event, error) {
	var ev Event
	err := s.write(ctx, "roll back", func(tx *stx, now time.Time) error {
		prev, active, err := swapPair(ctx, tx, tenantID)
		if err != nil {
			return err
		}
		// The unique indexes are checked row by row, so the swap passes through
		// 'swapping', which the deferred swap_guard key forbids at COMMIT.
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`UPDATE credentials SET state = 'swapping', swap_guard = 1 WHERE id = ?`, []any{active.ID}},
			{`UPDATE credentials SET state = 'active', activated_at = ? WHERE id = ?`, []any{now.UnixNano(), prev.ID}},
			{`UPDATE credentials SET state = 'previous', swap_guard = NULL WHERE id = ?`, []any{active.ID}},
		} {
			if _, err := tx.ExecContext(ctx, q.sql, q.args...); err != nil {
				return fmt.Errorf("swap credentials: %w", err)
			}
		}
		e := Event{Kind: EvTenantRollback, TenantID: tenantID, CredentialID: prev.ID,
			Message: fmt.Sprintf("rolled back: %q is active again, %q is previous", prev.Name, active.Name),
			Fields:  map[string]string{"active": prev.ID, "previous": active.ID}}
		r, err := getOne(ctx, tx, scanRot, "rotation of tenant", tenantID, `SELECT `+rotCols+` FROM rotations
			WHERE tenant_id = ? AND ((from_credential_id = ? AND to_credential_id = ? AND step = 'cutover')
			  OR (from_credential_id = ? AND to_credential_id = ? AND step = 'rolled-back'))
			ORDER BY rowid DESC LIMIT 1`, tenantID, prev.ID, active.ID, active.ID, prev.ID)
		switch {
		case err == nil:
			next := StepRolledBack
			if r.Step == StepRolledBack {
				next = StepCutover
			}
			if err := setStep(ctx, tx, now, &r, next, ""); err != nil {
				return err
			}
			e.RotationID = r.ID
			e.Fields["rotation_step"] = string(next)
		case !errors.Is(err, ErrNotFound):
			return err
		}
		ev, err = insertEvent(ctx, tx, now, e)
		return err
	})
	return ev, err
}

// cutoverRotationSQL reads the rotation that cut over from one credential to
// another (seeking rotations_by_target).
var cutoverRotationSQL = `SELECT ` + rotCols + ` FROM rotations
	WHERE tenant_id = ? AND from_credential_id = ? AND to_credential_id = ? AND step = 'cutover'
	ORDER BY rowid DESC LIMIT 1`
