package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// checkNew refuses a NewCredential that lacks what every credential needs.
func checkNew(nc NewCredential) error {
	switch {
	case nc.ClientID == "" || nc.KeyID == "":
		return errors.New("new credential: empty Client ID or Key ID; both come from the decrypted payload")
	case nc.Scope == "":
		// Which scopes exist is Apple's to say (package agent/apple); the
		// caller resolves it from the Client ID, and the schema's CHECK
		// refuses any other value.
		return errors.New("new credential: empty scope; pass the scope its Client ID implies")
	case len(nc.KeyPEM) == 0:
		return errors.New("new credential: no private key; pass the PEM to seal")
	case nc.Origin != OriginManaged && nc.Origin != OriginLocal:
		return fmt.Errorf("new credential: origin %q is neither managed nor local", nc.Origin)
	}
	return nil
}

// insertCred seals the key and inserts the credential in state st. Its
// import, if named, must have been recorded (ErrNotFound otherwise).
func (s *Store) insertCred(ctx context.Context, tx *stx, now time.Time, tenantID string, nc NewCredential, st CredState) (Credential, error) {
	if nc.ImportID != "" {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM imports WHERE id = ?`, nc.ImportID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return Credential{}, fmt.Errorf("import %q was not recorded; call RecordImport first: %w", nc.ImportID, ErrNotFound)
		}
		if err != nil {
			return Credential{}, fmt.Errorf("find import %q: %w", nc.ImportID, err)
		}
	}
	c := Credential{ID: newID("cred_"), TenantID: tenantID, Name: nc.Name, ClientID: nc.ClientID, KeyID: nc.KeyID,
		Scope: nc.Scope, State: st, Origin: nc.Origin, ImportID: nc.ImportID, HasKey: true, CreatedAt: now}
	if st == CredActive {
		c.ActivatedAt = now
	}
	sealed, err := s.seal.seal(c.ID, nc.KeyPEM)
	if err != nil {
		return Credential{}, fmt.Errorf("seal key: %w", err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO credentials (id, tenant_id, name, client_id, key_id, scope, state,
		origin, import_id, sealed_key, created_at, activated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, tenantID, c.Name, c.ClientID, c.KeyID, c.Scope, string(st), string(c.Origin), nullStr(c.ImportID),
		sealed, now.UnixNano(), nano(c.ActivatedAt))
	if err != nil {
		return Credential{}, fmt.Errorf("insert credential: %w", err)
	}
	return c, nil
}

// settleImport moves the import named by importID (if any) to state, linked
// to the tenant and credential. A missing import is ErrNotFound.
func settleImport(ctx context.Context, tx *stx, now time.Time, importID string, st ImportState, reason string, c Credential) error {
	if importID == "" {
		return nil
	}
	res, err := tx.ExecContext(ctx, `UPDATE imports SET state = ?, reason = ?, tenant_id = ?, credential_id = ?,
		client_id = ?, key_id = ?, updated_at = ? WHERE id = ?`,
		string(st), reason, c.TenantID, c.ID, c.ClientID, c.KeyID, now.UnixNano(), importID)
	if err != nil {
		return fmt.Errorf("update import %q: %w", importID, err)
	}
	return mustAffect(res, "import", importID)
}

// AddCredential creates a new tenant (named tenantName, or the credential's
// name when empty) with nc as its active credential and marks nc.ImportID
// (if any) applied, in one transaction with the events it returns: a
// credential.added event and, with an import, its import.state applied.
func (s *Store) AddCredential(ctx context.Context, nc NewCredential, tenantName string) (Tenant, Credential, []Event, error) {
	if err := checkNew(nc); err != nil {
		return Tenant{}, Credential{}, nil, fmt.Errorf("add credential: %w", err)
	}
	if tenantName == "" {
		tenantName = nc.Name
	}
	var t Tenant
	var c Credential
	var evs []Event
	err := s.write(ctx, "add credential", func(tx *stx, now time.Time) error {
		t = Tenant{ID: newID("ten_"), Name: tenantName, Scope: nc.Scope, CreatedAt: now, TokenURL: nc.TokenURL, APIBaseURL: nc.APIBaseURL}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tenants (id, name, scope, created_at, token_url, api_base_url) VALUES (?, ?, ?, ?, ?, ?)`,
			t.ID, t.Name, t.Scope, now.UnixNano(), t.TokenURL, t.APIBaseURL); err != nil {
			return fmt.Errorf("insert tenant: %w", err)
		}
		var err error
		if c, err = s.insertCred(ctx, tx, now, t.ID, nc, CredActive); err != nil {
			return err
		}
		if err := settleImport(ctx, tx, now, nc.ImportID, ImportApplied, "", c); err != nil {
			return err
		}
		ev, err := insertEvent(ctx, tx, now, Event{Kind: EvCredentialAdded, TenantID: t.ID, ImportID: nc.ImportID,
			CredentialID: c.ID, Message: fmt.Sprintf("credential %q added as the active credential of new tenant %q", c.Name, t.Name),
			Fields: map[string]string{"client_id": c.ClientID, "key_id": c.KeyID}})
		if err != nil {
			return err
		}
		evs = append(evs, ev)
		return appliedEvent(ctx, tx, now, nc.ImportID, t.ID, "a new tenant was created for it", &evs)
	})
	if err != nil {
		return Tenant{}, Credential{}, nil, err
	}
	return t, c, evs, nil
}

// Stage stores nc as the tenant's pending credential and opens a rotation at
// step staged from the current active credential. The import (if any) moves
// to applying. It returns the rotation.staged event it wrote. ErrInvariant if
// the tenant already has an unfinished rotation.
func (s *Store) Stage(ctx context.Context, tenantID string, nc NewCredential) (Rotation, Credential, Event, error) {
	if err := checkNew(nc); err != nil {
		return Rotation{}, Credential{}, Event{}, fmt.Errorf("stage rotation: %w", err)
	}
	var r Rotation
	var c Credential
	var ev Event
	err := s.write(ctx, "stage rotation", func(tx *stx, now time.Time) error {
		var err error
		r, c, ev, err = s.stage(ctx, tx, now, tenantID, nc)
		return err
	})
	if err != nil {
		return Rotation{}, Credential{}, Event{}, err
	}
	return r, c, ev, nil
}

// stage is Stage inside tx. The import (if any) moves to applying, takes the
// credential's identity and counts one more attempt.
func (s *Store) stage(ctx context.Context, tx *stx, now time.Time, tenantID string, nc NewCredential) (Rotation, Credential, Event, error) {
	var r Rotation
	t, err := getOne(ctx, tx, scanTenant, "tenant", tenantID, `SELECT `+tenantCols+` FROM tenants WHERE id = ?`, tenantID)
	if err != nil {
		return r, Credential{}, Event{}, err
	}
	if t.Scope != nc.Scope {
		return r, Credential{}, Event{}, fmt.Errorf("credential scope %s does not match tenant scope %s: %w", nc.Scope, t.Scope, ErrInvariant)
	}
	open, err := getOne(ctx, tx, scanRot, "unfinished rotation of tenant", tenantID,
		`SELECT `+rotCols+` FROM rotations WHERE tenant_id = ? AND step IN ('staged', 'validated')`, tenantID)
	switch {
	case err == nil:
		return r, Credential{}, Event{}, fmt.Errorf("tenant %q already has rotation %s at step %s; fail it or finish it first: %w",
			tenantID, open.ID, open.Step, ErrInvariant)
	case !errors.Is(err, ErrNotFound):
		return r, Credential{}, Event{}, err
	}
	active, err := credIn(ctx, tx, tenantID, CredActive)
	if err != nil {
		return r, Credential{}, Event{}, err
	}
	c, err := s.insertCred(ctx, tx, now, tenantID, nc, CredPending)
	if err != nil {
		return r, Credential{}, Event{}, err
	}
	r = Rotation{ID: newID("rot_"), TenantID: tenantID, ImportID: nc.ImportID, FromCredentialID: active.ID,
		ToCredentialID: c.ID, Step: StepStaged, StartedAt: now, UpdatedAt: now}
	if _, err := tx.ExecContext(ctx, `INSERT INTO rotations (id, tenant_id, import_id, from_credential_id,
		to_credential_id, step, started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.TenantID, nullStr(r.ImportID), r.FromCredentialID, r.ToCredentialID, string(r.Step),
		now.UnixNano(), now.UnixNano()); err != nil {
		return r, Credential{}, Event{}, fmt.Errorf("insert rotation: %w", err)
	}
	if err := settleImport(ctx, tx, now, nc.ImportID, ImportApplying, "", c); err != nil {
		return r, Credential{}, Event{}, err
	}
	if nc.ImportID != "" {
		if _, err := tx.ExecContext(ctx, `UPDATE imports SET attempts = attempts + 1 WHERE id = ?`, nc.ImportID); err != nil {
			return r, Credential{}, Event{}, fmt.Errorf("count attempt of import %q: %w", nc.ImportID, err)
		}
	}
	ev, err := insertEvent(ctx, tx, now, rotEvent(r, EvRotationStaged,
		fmt.Sprintf("credential %q staged to replace %q", c.Name, active.Name)))
	return r, c, ev, err
}

// credIn returns the tenant's credential in state st, or ErrState if none.
// The state is written into the text, not bound: SQLite then seeks the
// state's partial unique index, and a bound state (which SQLite looks at
// to decide whether a partial index applies) would make the prepared
// statement be parsed and planned again every time it runs.
func credIn(ctx context.Context, tx *stx, tenantID string, st CredState) (Credential, error) {
	switch st {
	case CredPending, CredActive, CredPrevious, CredRetired, CredFailed:
	default:
		return Credential{}, fmt.Errorf("credential state %q: %w", st, ErrState)
	}
	c, err := getOne(ctx, tx, scanCred, "credential of tenant", tenantID,
		`SELECT `+credCols+` FROM credentials WHERE tenant_id = ? AND state = '`+string(st)+`'`, tenantID)
	if errors.Is(err, ErrNotFound) {
		return c, fmt.Errorf("tenant %q has no %s credential: %w", tenantID, st, ErrState)
	}
	return c, err
}

// rotationIn loads a rotation inside tx and checks that its step is one of steps.
func rotationIn(ctx context.Context, tx *stx, id string, steps ...Step) (Rotation, error) {
	r, err := getOne(ctx, tx, scanRot, "rotation", id, `SELECT `+rotCols+` FROM rotations WHERE id = ?`, id)
	if err != nil {
		return r, err
	}
	for _, st := range steps {
		if r.Step == st {
			return r, nil
		}
	}
	return r, fmt.Errorf("rotation %s is at step %s, expected %v: %w", id, r.Step, steps, ErrState)
}

// setStep records a rotation's new step (and reason).
func setStep(ctx context.Context, tx *stx, now time.Time, r *Rotation, st Step, reason string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE rotations SET step = ?, reason = ?, updated_at = ? WHERE id = ?`,
		string(st), reason, now.UnixNano(), r.ID); err != nil {
		return fmt.Errorf("move rotation %s to %s: %w", r.ID, st, err)
	}
	r.Step, r.Reason, r.UpdatedAt = st, reason, now
	return nil
}

// rotEvent is the event of rotation r reaching its current step.
func rotEvent(r Rotation, kind EventKind, msg string) Event {
	return Event{Kind: kind, TenantID: r.TenantID, ImportID: r.ImportID, CredentialID: r.ToCredentialID,
		RotationID: r.ID, Message: msg,
		Fields: map[string]string{"step": string(r.Step), "from": r.FromCredentialID, "to": r.ToCredentialID}}
}

// Validated records that the staged credential passed validation and
// returns the rotation.validated event it wrote. Calling it again on a
// validated rotation is a no-op that writes nothing (a zero Event); any other
// step is ErrState.
func (s *Store) Validated(ctx context.Context, rotationID string) (Event, error) {
	var ev Event
	err := s.write(ctx, "record validation", func(tx *stx, now time.Time) error {
		var err error
		ev, err = validate(ctx, tx, now, rotationID)
		return err
	})
	return ev, err
}

// validate is Validated inside tx.
func validate(ctx context.Context, tx *stx, now time.Time, rotationID string) (Event, error) {
	r, err := rotationIn(ctx, tx, rotationID, StepStaged, StepValidated)
	if err != nil || r.Step == StepValidated {
		return Event{}, err
	}
	if err := setStep(ctx, tx, now, &r, StepValidated, ""); err != nil {
		return Event{}, err
	}
	return insertEvent(ctx, tx, now, rotEvent(r, EvRotationValidated, "staged credential validated"))
}
