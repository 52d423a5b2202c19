package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// UnlockLimit returns the counted unlock attempts of an import and the end
// of its lock-out (zero when none); 0 and zero time when nothing is counted.
func (s *Store) UnlockLimit(ctx context.Context, importID string) (int, time.Time, error) {
	var failures int
	var until sql.NullInt64
	err := s.reads().QueryRowContext(ctx, `SELECT failures, locked_until FROM unlock_limits WHERE import_id = ?`, importID).
		Scan(&failures, &until)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("read unlock limit of %q: %w", importID, mapErr(err))
	}
	return failures, fromNano(until), nil
}

// SetUnlockLimit records an import's counted unlock attempts and lock-out
// end; failures 0 forgets the import.
func (s *Store) SetUnlockLimit(ctx context.Context, importID string, failures int, until time.Time) error {
	return s.write(ctx, "record unlock limit", func(tx *stx, _ time.Time) error {
		if failures <= 0 {
			_, err := tx.ExecContext(ctx, `DELETE FROM unlock_limits WHERE import_id = ?`, importID)
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO unlock_limits (import_id, failures, locked_until) VALUES (?, ?, ?)
			ON CONFLICT (import_id) DO UPDATE SET failures = excluded.failures, locked_until = excluded.locked_until`,
			importID, failures, nano(until))
		return err
	})
}
