package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

const tenantCols = `id, name, scope, created_at, last_sync_at, sync_cursor, sync_error, token_url, api_base_url,
	sync_pass_started_at, sync_listed_at IS NOT NULL, sync_paused_until, device_count, coverage_count,
	released_count, active_count, expired_count, none_count, unknown_count`

func scanTenant(sc interface{ Scan(...any) error }) (Tenant, error) {
	var t Tenant
	var created, synced, pass, paused sql.NullInt64
	n := &t.Counts
	err := sc.Scan(&t.ID, &t.Name, &t.Scope, &created, &synced, &t.SyncCursor, &t.SyncError, &t.TokenURL, &t.APIBaseURL,
		&pass, &t.SyncListed, &paused, &n.Devices, &n.Coverage, &n.Released, &n.Active, &n.Expired, &n.None, &n.Unknown)
	t.CreatedAt, t.LastSyncAt = fromNano(created), fromNano(synced)
	t.SyncPassStartedAt, t.SyncPausedUntil = fromNano(pass), fromNano(paused)
	return t, err
}

const credCols = `id, tenant_id, name, client_id, key_id, scope, state, origin, coalesce(import_id, ''),
	sealed_key IS NOT NULL, created_at, activated_at, retired_at, last_auth_at`

func scanCred(sc interface{ Scan(...any) error }) (Credential, error) {
	var c Credential
	var created, activated, retired, auth sql.NullInt64
	err := sc.Scan(&c.ID, &c.TenantID, &c.Name, &c.ClientID, &c.KeyID, &c.Scope, &c.State, &c.Origin,
		&c.ImportID, &c.HasKey, &created, &activated, &retired, &auth)
	c.CreatedAt, c.ActivatedAt = fromNano(created), fromNano(activated)
	c.RetiredAt, c.LastAuthAt = fromNano(retired), fromNano(auth)
	return c, err
}

const rotCols = `id, tenant_id, coalesce(import_id, ''), from_credential_id, to_credential_id, step, reason, started_at, updated_at`

func scanRot(sc interface{ Scan(...any) error }) (Rotation, error) {
	var r Rotation
	var started, updated sql.NullInt64
	err := sc.Scan(&r.ID, &r.TenantID, &r.ImportID, &r.FromCredentialID, &r.ToCredentialID, &r.Step, &r.Reason, &started, &updated)
	r.StartedAt, r.UpdatedAt = fromNano(started), fromNano(updated)
	return r, err
}

// getOne runs a single-row query and scans it, turning "no rows" into ErrNotFound.
func getOne[T any](ctx context.Context, q queryer, scan func(interface{ Scan(...any) error }) (T, error),
	what, id, query string, args ...any) (T, error) {
	v, err := scan(q.QueryRowContext(ctx, query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return v, fmt.Errorf("%s %q: %w", what, id, ErrNotFound)
	}
	if err != nil {
		return v, fmt.Errorf("read %s %q: %w", what, id, mapErr(err))
	}
	return v, nil
}

// getAll runs a query and scans every row.
func getAll[T any](ctx context.Context, q queryer, scan func(interface{ Scan(...any) error }) (T, error),
	what, query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", what, mapErr(err))
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", what, mapErr(err))
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", what, mapErr(err))
	}
	return out, nil
}

// Tenant returns one tenant, or ErrNotFound.
func (s *Store) Tenant(ctx context.Context, id string) (Tenant, error) {
	return getOne(ctx, s.reads(), scanTenant, "tenant", id, `SELECT `+tenantCols+` FROM tenants WHERE id = ?`, id)
}

// Tenants returns every tenant, oldest first.
func (s *Store) Tenants(ctx context.Context) ([]Tenant, error) {
	return getAll(ctx, s.reads(), scanTenant, "tenants", `SELECT `+tenantCols+` FROM tenants ORDER BY created_at, id`)
}

// Credential returns one credential's record (never its key), or ErrNotFound.
func (s *Store) Credential(ctx context.Context, id string) (Credential, error) {
	return getOne(ctx, s.reads(), scanCred, "credential", id, `SELECT `+credCols+` FROM credentials WHERE id = ?`, id)
}

// Credentials returns every credential of every tenant, oldest first.
func (s *Store) Credentials(ctx context.Context) ([]Credential, error) {
	return getAll(ctx, s.reads(), scanCred, "credentials", `SELECT `+credCols+` FROM credentials ORDER BY created_at, id`)
}

// Rotations returns the whole rotation journal, oldest first.
func (s *Store) Rotations(ctx context.Context) ([]Rotation, error) {
	return getAll(ctx, s.reads(), scanRot, "rotations", `SELECT `+rotCols+` FROM rotations ORDER BY rowid`)
}

// UnfinishedRotations returns the rotations at staged or validated: on start
// the agent resumes each from its step or fails it.
func (s *Store) UnfinishedRotations(ctx context.Context) ([]Rotation, error) {
	return getAll(ctx, s.reads(), scanRot, "unfinished rotations",
		`SELECT `+rotCols+` FROM rotations WHERE step IN ('staged', 'validated') ORDER BY rowid`)
}

// CurrentRotation returns the tenant's most recent rotation, or ErrNotFound.
func (s *Store) CurrentRotation(ctx context.Context, tenantID string) (Rotation, error) {
	return getOne(ctx, s.reads(), scanRot, "rotation of tenant", tenantID,
		`SELECT `+rotCols+` FROM rotations WHERE tenant_id = ? ORDER BY rowid DESC LIMIT 1`, tenantID)
}

// Rotation returns one rotation, or ErrNotFound.
func (s *Store) Rotation(ctx context.Context, id string) (Rotation, error) {
	return getOne(ctx, s.reads(), scanRot, "rotation", id, `SELECT `+rotCols+` FROM rotations WHERE id = ?`, id)
}

// Key returns the unsealed private key (PEM) of a credential. ErrNotFound
// when the credential does not exist or its key was wiped. The caller owns
// the slice and should clear it when done.
func (s *Store) Key(ctx context.Context, credentialID string) ([]byte, error) {
	if s.seal == nil {
		return nil, fmt.Errorf("read key of %q: %w", credentialID, ErrReadOnly)
	}
	var sealed []byte
	err := s.reads().QueryRowContext(ctx, `SELECT sealed_key FROM credentials WHERE id = ?`, credentialID).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("read key: credential %q: %w", credentialID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read key of %q: %w", credentialID, mapErr(err))
	}
	if sealed == nil {
		return nil, fmt.Errorf("read key: key of credential %q was wiped: %w", credentialID, ErrNotFound)
	}
	pem, err := s.seal.open(credentialID, sealed)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	return pem, nil
}

// MarkAuth records an accepted token exchange with the credential at at.
func (s *Store) MarkAuth(ctx context.Context, credentialID string, at time.Time) error {
	return s.write(ctx, "mark auth", func(tx *stx, now time.Time) error {
		if at.IsZero() {
			at = now
		}
		res, err := tx.ExecContext(ctx, `UPDATE credentials SET last_auth_at = ? WHERE id = ?`, at.UnixNano(), credentialID)
		if err != nil {
			return err
		}
		return mustAffect(res, "credential", credentialID)
	})
}

// SetEndpoints records the token and API URLs a tenant is checked and
// synced against ("" = Apple's default for its scope).
func (s *Store) SetEndpoints(ctx context.Context, tenantID, tokenURL, apiBaseURL string) error {
	return s.write(ctx, "set endpoints", func(tx *stx, now time.Time) error {
		res, err := tx.ExecContext(ctx, `UPDATE tenants SET token_url = ?, api_base_url = ? WHERE id = ?`, tokenURL, apiBaseURL, tenantID)
		if err != nil {
			return err
		}
		return mustAffect(res, "tenant", tenantID)
	})
}

// SetOrigin records where a credential now comes from: a credential whose
// payload was removed stays, owned locally (OriginLocal).
func (s *Store) SetOrigin(ctx context.Context, credentialID string, origin Origin) error {
	return s.write(ctx, "set origin", func(tx *stx, now time.Time) error {
		res, err := tx.ExecContext(ctx, `UPDATE credentials SET origin = ? WHERE id = ?`, string(origin), credentialID)
		if err != nil {
			return err
		}
		return mustAffect(res, "credential", credentialID)
	})
}

// mustAffect turns "no row updated" into ErrNotFound.
func mustAffect(res sql.Result, what, id string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%s %q: %w", what, id, ErrNotFound)
	}
	return nil
}
