package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The reads below run after every change the agent makes; each seeks an
// index of migration 0006 rather than reading every credential, import or
// rotation ever recorded (plan_test.go holds them to that).
var (
	inUseSQL = `SELECT ` + credCols + ` FROM credentials
		WHERE state IN ('active', 'previous') ORDER BY created_at, id`
	waitingSQL = `SELECT ` + importCols + ` FROM imports
		WHERE state IN ('pending-unlock', 'needs-target', 'failed', 'applying') ORDER BY created_at, id`
	// lastRotationSQL: the latest started, the first recorded among equals.
	lastRotationSQL = `SELECT ` + rotCols + ` FROM rotations
		WHERE started_at = (SELECT max(started_at) FROM rotations) ORDER BY rowid LIMIT 1`
	// importsOfSQL is followed by the list of states.
	importsOfSQL    = `SELECT ` + importCols + ` FROM imports WHERE tenant_id = ? AND state IN `
	newerAppliedSQL = `SELECT ` + importCols + ` FROM imports
		WHERE tenant_id = ? AND state = 'applied' AND created_at > ? AND id <> ? ORDER BY created_at, id LIMIT 1`
)

// Overview is what the agent's status shows from the store, read in one
// snapshot: every tenant, the credentials in use, the imports waiting for
// something, and the most recent rotation.
type Overview struct {
	Tenants      []Tenant     // oldest first
	InUse        []Credential // active and previous credentials, oldest first
	Waiting      []Import     // pending-unlock, needs-target, failed or applying; oldest first
	LastRotation *Rotation    // the one started last (the first recorded of a tie); nil when none
}

// Overview reads the Overview in one read transaction. It reads only the
// rows it returns, so its cost does not grow with the history of
// credentials, imports and rotations.
func (s *Store) Overview(ctx context.Context) (Overview, error) {
	var o Overview
	tx, end, err := s.readTx(ctx)
	if err != nil {
		return o, fmt.Errorf("read overview: %w", mapErr(err))
	}
	defer end()
	if o.Tenants, err = getAll(ctx, tx, scanTenant, "tenants", `SELECT `+tenantCols+` FROM tenants ORDER BY created_at, id`); err != nil {
		return o, err
	}
	if o.InUse, err = getAll(ctx, tx, scanCred, "credentials in use", inUseSQL); err != nil {
		return o, err
	}
	if o.Waiting, err = getAll(ctx, tx, scanImport, "waiting imports", waitingSQL); err != nil {
		return o, err
	}
	r, err := getOne(ctx, tx, scanRot, "last rotation", "", lastRotationSQL)
	switch {
	case err == nil:
		o.LastRotation = &r
	case !errors.Is(err, ErrNotFound):
		return o, err
	}
	return o, nil
}

// CredentialsInUse returns the active and previous credentials of every
// tenant, oldest first: what deciding an import's intent needs, without the
// history of retired and failed ones.
func (s *Store) CredentialsInUse(ctx context.Context) ([]Credential, error) {
	return getAll(ctx, s.reads(), scanCred, "credentials in use", inUseSQL)
}

// ImportsOf returns the imports of a tenant in one of states, oldest first.
func (s *Store) ImportsOf(ctx context.Context, tenantID string, states ...ImportState) ([]Import, error) {
	if len(states) == 0 {
		return nil, nil
	}
	q := importsOfSQL + `(?` + strings.Repeat(", ?", len(states)-1) + `) ORDER BY created_at, id`
	args := []any{tenantID}
	for _, st := range states {
		args = append(args, string(st))
	}
	return getAll(ctx, s.reads(), scanImport, "imports of tenant", q, args...)
}

// NewerApplied returns the first import applied to the tenant that was
// created after the given time, other than import except; ErrNotFound when
// there is none.
func (s *Store) NewerApplied(ctx context.Context, tenantID string, after time.Time, except string) (Import, error) {
	return getOne(ctx, s.reads(), scanImport, "applied import of tenant", tenantID, newerAppliedSQL,
		tenantID, after.UnixNano(), except)
}

// WithdrawCandidates returns the imports recorded from source that its
// entries leaving it would change, oldest first: those still waiting
// (pending-unlock, needs-target, failed), and those applied whose
// credential is still managed. Imports applied long ago, whose credential
// was released, are not read again.
func (s *Store) WithdrawCandidates(ctx context.Context, source string) ([]Import, error) {
	return getAll(ctx, s.reads(), scanImport, "imports of source", `SELECT `+importCols+` FROM imports AS i
		WHERE i.source = ? AND (i.state IN ('pending-unlock', 'needs-target', 'failed')
			OR i.state = 'applied' AND EXISTS (SELECT 1 FROM credentials AS c WHERE c.id = i.credential_id AND c.origin = 'managed'))
		ORDER BY i.created_at, i.id`, source)
}
