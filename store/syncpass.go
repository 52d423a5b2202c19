package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// A sync pass reads a tenant's whole device list, page by page, then the
// coverage of every device in the organisation not read since the pass
// began, most urgent first. Each page and each batch of coverage is its own
// transaction with the bookkeeping that lets a pass stopped at any point
// (error, restart, SIGKILL, rotation) resume without asking Apple again for
// what it stored. docs/apple.md describes the whole pass.

// BeginPass starts a sync pass of the tenant unless one is under way, and
// returns the tenant as the pass finds it: SyncPassStartedAt, SyncCursor
// and SyncListed say where to resume.
func (s *Store) BeginPass(ctx context.Context, tenantID string) (Tenant, error) {
	err := s.write(ctx, "begin sync pass", func(tx *stx, now time.Time) error {
		if err := tenantExists(ctx, tx, tenantID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE tenants SET sync_pass_started_at = ?, sync_cursor = '',
			sync_listed_at = NULL WHERE id = ? AND sync_pass_started_at IS NULL`, now.UnixNano(), tenantID)
		return err
	})
	if err != nil {
		return Tenant{}, err
	}
	return s.Tenant(ctx, tenantID)
}

// SyncPage stores one page of the device list in one transaction: its
// devices (seen now) and the cursor of the next page. On the last page
// (next == "") it records that the pass has read the whole list and marks
// released every device of the tenant that the pass did not see; it
// returns how many it marked.
func (s *Store) SyncPage(ctx context.Context, tenantID string, devs []Device, next string) (released int, err error) {
	err = s.writeDevices(ctx, "store sync page", func(tx *stx, now time.Time) error {
		if err := tenantExists(ctx, tx, tenantID); err != nil {
			return err
		}
		if err := upsertDevices(ctx, tx, tenantID, now, devs); err != nil {
			return err
		}
		if next != "" {
			_, err := tx.ExecContext(ctx, `UPDATE tenants SET sync_cursor = ? WHERE id = ?`, next, tenantID)
			return err
		}
		var pass sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT sync_pass_started_at FROM tenants WHERE id = ?`, tenantID).
			Scan(&pass); err != nil {
			return err
		}
		if !pass.Valid {
			return fmt.Errorf("last page of tenant %s without a sync pass; call BeginPass first: %w", tenantID, ErrState)
		}
		res, err := tx.ExecContext(ctx, `UPDATE devices SET released_at = ?1, updated_at = ?1
			WHERE tenant_id = ?2 AND released_at IS NULL AND (seen_at IS NULL OR seen_at < ?3)`,
			now.UnixNano(), tenantID, pass.Int64)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		released = int(n)
		if err := rankDevices(ctx, tx, tenantID, now); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE tenants SET sync_cursor = '', sync_listed_at = ? WHERE id = ?`,
			now.UnixNano(), tenantID)
		return err
	})
	return released, err
}

// rankDevices numbers the tenant's devices in the organisation in the
// coverage refresh order at now: never read; then unknown, or ending within
// 90 days (or marked active past their end); then the least recently read.
// Computed once, when a pass has read the whole list, so that CoverageDue is
// a walk along an index rather than a sort of every device per batch.
func rankDevices(ctx context.Context, tx *stx, tenantID string, now time.Time) error {
	_, err := tx.ExecContext(ctx, `UPDATE devices SET refresh_rank = r.rank FROM (
			SELECT serial, row_number() OVER (ORDER BY coverage_checked_at IS NOT NULL,
				CASE WHEN coverage_state = 'unknown' OR (coverage_end < ?2
					AND (coverage_end >= ?3 OR coverage_state = 'active')) THEN 0 ELSE 1 END,
				coverage_checked_at, serial) AS rank
			FROM devices WHERE tenant_id = ?1 AND released_at IS NULL) r
		WHERE devices.tenant_id = ?1 AND devices.serial = r.serial`,
		tenantID, now.Add(90*24*time.Hour).UnixNano(), now.UnixNano())
	if err != nil {
		return fmt.Errorf("rank devices for the coverage refresh: %w", err)
	}
	return nil
}

// RestartList forgets the stored cursor of the pass under way, so that it
// reads the device list again from the first page (Apple refused the cursor).
func (s *Store) RestartList(ctx context.Context, tenantID string) error {
	return s.write(ctx, "restart device list", func(tx *stx, now time.Time) error {
		res, err := tx.ExecContext(ctx, `UPDATE tenants SET sync_cursor = '', sync_listed_at = NULL WHERE id = ?`, tenantID)
		if err != nil {
			return err
		}
		return mustAffect(res, "tenant", tenantID)
	})
}

// CoverageDue returns up to limit devices still in the organisation whose
// coverage was not read since since, in the refresh order ranked when the
// pass read the whole list (rankDevices), after the rank afterRank (0 for
// the start; Device.RefreshRank of the last device of the previous call).
// The parameters are cast to their columns' types so that the prepared
// statement is not planned again at each run (see DeviceQuery.where).
func (s *Store) CoverageDue(ctx context.Context, tenantID string, since time.Time, afterRank int64, limit int) ([]Device, error) {
	return getAll(ctx, s.reads(), scanDueDevice, "devices due a coverage read", `SELECT `+deviceCols+`, d.refresh_rank
		FROM devices d INDEXED BY devices_by_rank
		WHERE d.tenant_id = CAST(?1 AS TEXT) AND d.refresh_rank > CAST(?3 AS INTEGER) AND d.released_at IS NULL
			AND (d.coverage_checked_at IS NULL OR d.coverage_checked_at < CAST(?2 AS INTEGER))
		ORDER BY d.refresh_rank LIMIT CAST(?4 AS INTEGER)`, tenantID, since.UnixNano(), afterRank, limit)
}

func scanDueDevice(sc interface{ Scan(...any) error }) (Device, error) {
	var d Device
	var attrs sql.NullString
	var end, checked, released, updated sql.NullInt64
	err := sc.Scan(&d.Serial, &d.AppleID, &d.Model, &d.ProductFamily, &d.Status, &attrs, &d.CoverageState,
		&end, &checked, &released, &updated, &d.RefreshRank)
	d.CoverageEnd, d.CoverageCheckedAt = fromNano(end), fromNano(checked)
	d.ReleasedAt, d.UpdatedAt = fromNano(released), fromNano(updated)
	return d, err
}

// EndPass records a finished sync pass at at: the last sync time, no error,
// no cursor, no pass under way.
func (s *Store) EndPass(ctx context.Context, tenantID string, at time.Time) error {
	return s.write(ctx, "end sync pass", func(tx *stx, now time.Time) error {
		res, err := tx.ExecContext(ctx, `UPDATE tenants SET last_sync_at = ?, sync_error = '', sync_cursor = '',
			sync_pass_started_at = NULL, sync_listed_at = NULL, sync_paused_until = NULL WHERE id = ?`,
			at.UnixNano(), tenantID)
		if err != nil {
			return err
		}
		return mustAffect(res, "tenant", tenantID)
	})
}

// SyncStopped records why the pass under way stopped (msg) and, when until
// is not zero, that it may not resume before until. Its progress stays.
func (s *Store) SyncStopped(ctx context.Context, tenantID, msg string, until time.Time) error {
	return s.write(ctx, "record sync stop", func(tx *stx, now time.Time) error {
		res, err := tx.ExecContext(ctx, `UPDATE tenants SET sync_error = ?, sync_paused_until = ? WHERE id = ?`,
			msg, nano(until), tenantID)
		if err != nil {
			return err
		}
		return mustAffect(res, "tenant", tenantID)
	})
}

// SetSync records sync bookkeeping: the cursor an interrupted sync resumes
// from ("" when done), the last sync time (kept when at is zero) and the
// last error ("" on success).
func (s *Store) SetSync(ctx context.Context, tenantID, cursor string, at time.Time, errMsg string) error {
	return s.write(ctx, "record sync", func(tx *stx, now time.Time) error {
		res, err := tx.ExecContext(ctx, `UPDATE tenants SET sync_cursor = ?, sync_error = ?,
			last_sync_at = coalesce(?, last_sync_at) WHERE id = ?`, cursor, errMsg, nano(at), tenantID)
		if err != nil {
			return err
		}
		return mustAffect(res, "tenant", tenantID)
	})
}
