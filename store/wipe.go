package store

import (
	"context"
	"time"
)

// writeWipe is write for a transaction that wipes key material: after the
// commit it checkpoints the WAL and truncates it, so the wiped sealed key
// lives neither in rekey.db (secure_delete zeroes the freed bytes) nor in
// rekey.db-wal once the method returns.
func (s *Store) writeWipe(ctx context.Context, op string, fn func(tx *stx, now time.Time) error) error {
	if err := s.write(ctx, op, fn); err != nil {
		return err
	}
	s.checkpointWipe(ctx)
	return nil
}

// checkpointWipe runs a TRUNCATE checkpoint on the writer. The write it
// follows is committed whatever happens here: when a reader keeps the
// checkpoint from completing, the debt is remembered and paid after the next
// write (and SQLite checkpoints and removes the WAL at Close).
func (s *Store) checkpointWipe(ctx context.Context) {
	var busy, logFrames, done int
	err := s.w.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &done)
	s.wipeOwed.Store(err != nil || busy != 0)
}

// payWipeDebt checkpoints after a write when an earlier wipe's checkpoint
// did not complete.
func (s *Store) payWipeDebt(ctx context.Context) {
	if s.wipeOwed.Load() {
		s.checkpointWipe(ctx)
	}
}

// Checkpointed reports whether every wipe so far has left the WAL (for tests
// and doctor).
func (s *Store) Checkpointed() bool { return !s.wipeOwed.Load() }
