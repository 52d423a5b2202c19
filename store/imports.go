package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

const importCols = `id, hash, source, name, intent, target, state, reason, attempts, coalesce(tenant_id, ''),
	coalesce(credential_id, ''), client_id, key_id, created_at, updated_at`

func scanImport(sc interface{ Scan(...any) error }) (Import, error) {
	var im Import
	var created, updated sql.NullInt64
	err := sc.Scan(&im.ID, &im.Hash, &im.Source, &im.Name, &im.Intent, &im.Target, &im.State, &im.Reason,
		&im.Attempts, &im.TenantID, &im.CredentialID, &im.ClientID, &im.KeyID, &created, &updated)
	im.CreatedAt, im.UpdatedAt = fromNano(created), fromNano(updated)
	return im, err
}

// RecordImport records an import before anything acts on it. A new ID is
// inserted (created = true; State defaults to pending-unlock, Intent to auto).
// A known ID with the same Hash returns the stored import; with another Hash
// it fails with ErrImportConflict and changes nothing.
func (s *Store) RecordImport(ctx context.Context, im Import) (Import, bool, error) {
	im, err := importDefaults(im)
	if err != nil {
		return Import{}, false, err
	}
	var out Import
	created := false
	err = s.write(ctx, "record import", func(tx *stx, now time.Time) error {
		var err error
		out, created, err = recordImport(ctx, tx, now, im)
		return err
	})
	return out, created, err
}

// importDefaults checks a new import and fills in its defaults.
func importDefaults(im Import) (Import, error) {
	if im.ID == "" || im.Hash == "" {
		return im, errors.New("record import: empty ID or Hash; give the ImportID and the entry's SHA-256")
	}
	if im.Intent == "" {
		im.Intent = "auto"
	}
	if im.State == "" {
		im.State = ImportPendingUnlock
	}
	return im, nil
}

// recordImport is RecordImport inside tx, with im's defaults filled in.
func recordImport(ctx context.Context, tx *stx, now time.Time, im Import) (Import, bool, error) {
	stored, err := getOne(ctx, tx, scanImport, "import", im.ID, `SELECT `+importCols+` FROM imports WHERE id = ?`, im.ID)
	if err == nil {
		if stored.Hash != im.Hash {
			return Import{}, false, fmt.Errorf("import %q: %w", im.ID, ErrImportConflict)
		}
		return stored, false, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return Import{}, false, err
	}
	im.CreatedAt, im.UpdatedAt = now, now
	if err := putImport(ctx, tx, im, true); err != nil {
		return Import{}, false, err
	}
	return im, true, nil
}

// putImport inserts or updates every mutable column of an import.
func putImport(ctx context.Context, tx *stx, im Import, insert bool) error {
	args := []any{im.Source, im.Name, im.Intent, im.Target, string(im.State), im.Reason, im.Attempts,
		nullStr(im.TenantID), nullStr(im.CredentialID), im.ClientID, im.KeyID, im.UpdatedAt.UnixNano(), im.ID}
	q := `UPDATE imports SET source = ?, name = ?, intent = ?, target = ?, state = ?, reason = ?, attempts = ?,
		tenant_id = ?, credential_id = ?, client_id = ?, key_id = ?, updated_at = ? WHERE id = ?`
	if insert {
		q = `INSERT INTO imports (source, name, intent, target, state, reason, attempts, tenant_id,
			credential_id, client_id, key_id, updated_at, id, hash, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
		args = append(args, im.Hash, im.CreatedAt.UnixNano())
	}
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("write import %q: %w", im.ID, err)
	}
	return nil
}

// Import returns one import, or ErrNotFound.
func (s *Store) Import(ctx context.Context, id string) (Import, error) {
	return getOne(ctx, s.reads(), scanImport, "import", id, `SELECT `+importCols+` FROM imports WHERE id = ?`, id)
}

// Imports returns every import, oldest first.
func (s *Store) Imports(ctx context.Context) ([]Import, error) {
	return getAll(ctx, s.reads(), scanImport, "imports", `SELECT `+importCols+` FROM imports ORDER BY created_at, id`)
}

// UpdateImport reads the import, lets fn change it and writes it back, all in
// one transaction. fn may change state, reason, attempts, target, tenant,
// credential and client/key ids; ID, Hash and CreatedAt are fixed. An error
// from fn aborts the update and is returned wrapped.
func (s *Store) UpdateImport(ctx context.Context, id string, fn func(*Import) error) (Import, error) {
	var out Import
	err := s.write(ctx, "update import", func(tx *stx, now time.Time) error {
		im, err := getOne(ctx, tx, scanImport, "import", id, `SELECT `+importCols+` FROM imports WHERE id = ?`, id)
		if err != nil {
			return err
		}
		fixed := im
		if err := fn(&im); err != nil {
			return err
		}
		if im.ID != fixed.ID || im.Hash != fixed.Hash || !im.CreatedAt.Equal(fixed.CreatedAt) {
			return fmt.Errorf("import %q: ID, Hash and CreatedAt cannot change: %w", id, ErrInvariant)
		}
		im.UpdatedAt = now
		if err := putImport(ctx, tx, im, false); err != nil {
			return err
		}
		out = im
		return nil
	})
	return out, err
}
