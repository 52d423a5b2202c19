package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/rekeyd/rekey/store"
)

// TestSchemaRefusesBrokenStates attacks each invariant with raw SQL, past
// every Go check: the database itself must refuse.
func TestSchemaRefusesBrokenStates(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	ten, active := addTenant(t, s, "A")
	rot, pending := stageValidated(t, s, ten.ID, "B")
	if err := s.UpsertDevices(ctx, ten.ID, []store.Device{{Serial: "S1"}}); err != nil {
		t.Fatal(err)
	}
	ten2, _ := addTenant(t, s, "C")
	failedRot, failed, _, err := s.Stage(ctx, ten2.ID, newCred("C2"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.FailRotation(ctx, failedRot.ID, "test"); err != nil {
		t.Fatal(err)
	}
	const insCred = `INSERT INTO credentials (id, tenant_id, name, client_id, key_id, scope, state, origin, sealed_key, created_at)
		VALUES (?, ?, 'x', 'BUSINESSAPI.x', 'k', 'business.api', ?, 'local', x'01', 1)`
	attacks := []struct {
		name string
		sql  string
		args []any
	}{
		{"second active credential", insCred, []any{"cred_attack00001", ten.ID, "active"}},
		{"second pending credential", insCred, []any{"cred_attack00002", ten.ID, "pending"}},
		{"pending promoted while another is active", `UPDATE credentials SET state = 'active' WHERE id = ?`, []any{pending.ID}},
		{"unknown credential state", `UPDATE credentials SET state = 'bogus' WHERE id = ?`, []any{active.ID}},
		{"active retired without a cut-over", `UPDATE credentials SET state = 'retired', sealed_key = NULL WHERE id = ?`, []any{active.ID}},
		{"failed credential keeping its key", insCred, []any{"cred_attack00003", ten.ID, "failed"}},
		{"wiped key restored", `UPDATE credentials SET sealed_key = x'01' WHERE id = ?`, []any{failed.ID}},
		{"failed credential revived", `UPDATE credentials SET state = 'pending' WHERE id = ?`, []any{failed.ID}},
		{"credential moved to another tenant", `UPDATE credentials SET tenant_id = 'ten_000000000000' WHERE id = ?`, []any{active.ID}},
		{"credential deleted", `DELETE FROM credentials WHERE id = ?`, []any{active.ID}},
		{"credential of a missing tenant", insCred, []any{"cred_attack00004", "ten_000000000000", "retired"}},
		{"left in the transient swap state", `UPDATE credentials SET state = 'swapping', swap_guard = 1 WHERE id = ?`, []any{active.ID}},
		{"second unfinished rotation", `INSERT INTO rotations (id, tenant_id, from_credential_id, to_credential_id, step, started_at, updated_at)
			VALUES ('rot_attack000001', ?, ?, ?, 'staged', 1, 1)`, []any{ten.ID, active.ID, pending.ID}},
		{"rotation step backwards", `UPDATE rotations SET step = 'staged' WHERE id = ?`, []any{rot.ID}},
		{"rotation skipping to confirmed", `UPDATE rotations SET step = 'confirmed' WHERE id = ?`, []any{rot.ID}},
		{"rotation to a credential of another tenant", `INSERT INTO rotations (id, tenant_id, from_credential_id, to_credential_id, step, started_at, updated_at)
			VALUES ('rot_attack000002', ?, ?, 'cred_nothere00000', 'failed', 1, 1)`, []any{ten.ID, active.ID}},
		{"rotation deleted", `DELETE FROM rotations WHERE id = ?`, []any{rot.ID}},
		{"event updated", `UPDATE events SET message = 'rewritten' WHERE seq = 1`, nil},
		{"event deleted", `DELETE FROM events WHERE seq = 1`, nil},
		{"tenant deleted", `DELETE FROM tenants WHERE id = ?`, []any{ten.ID}},
		{"device of a missing tenant", `INSERT INTO devices (tenant_id, serial, updated_at) VALUES ('ten_000000000000', 'S9', 1)`, nil},
		{"device with unknown coverage state", `UPDATE devices SET coverage_state = 'maybe' WHERE serial = 'S1'`, nil},
		{"coverage of a missing device", `INSERT INTO coverage (tenant_id, id, serial, updated_at) VALUES (?, 'c9', 'NOPE', 1)`, []any{ten.ID}},
		{"device attrs that are not JSON", `UPDATE devices SET attrs = '{oops' WHERE serial = 'S1'`, nil},
		{"import in an unknown state", `INSERT INTO imports (id, hash, intent, state, created_at, updated_at) VALUES ('i9', 'h', 'auto', 'done', 1, 1)`, nil},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			err := s.ExecRaw(ctx, a.sql, a.args...)
			if !errors.Is(err, store.ErrInvariant) {
				t.Fatalf("err = %v, want ErrInvariant", err)
			}
		})
	}
	mustHealthy(t, s)
	if evs, _ := s.Events(ctx, 0, 1); len(evs) != 1 || evs[0].Message == "rewritten" {
		t.Fatalf("first event changed: %+v", evs)
	}
}

// TestCheckReportsWhatTheSchemaCannotPrevent bypasses the schema (dropped
// trigger, foreign keys off) and expects Check to name each broken rule.
func TestCheckReportsWhatTheSchemaCannotPrevent(t *testing.T) {
	s, _, clk := openStore(t)
	ctx := context.Background()
	ten, _ := addTenant(t, s, "A")
	other, _ := addTenant(t, s, "B")
	stageValidated(t, s, other.ID, "B2")
	clk.Advance(48 * 3600e9)
	steps := []string{
		`DROP TRIGGER credentials_state_transition`,
		`UPDATE credentials SET state = 'previous' WHERE tenant_id = '` + ten.ID + `' AND state = 'active'`,
		`PRAGMA foreign_keys = OFF`,
		`INSERT INTO devices (tenant_id, serial, updated_at) VALUES ('ten_000000000000', 'ghost', 1)`,
		`PRAGMA foreign_keys = ON`,
		`PRAGMA ignore_check_constraints = ON`,
		`UPDATE credentials SET state = 'retired' WHERE tenant_id = '` + ten.ID + `'`,
		`PRAGMA ignore_check_constraints = OFF`,
	}
	for _, q := range steps {
		if err := s.ExecRaw(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	probs, err := s.Check(ctx, 24*3600e9)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, p := range probs {
		got[p.Check] = true
	}
	for _, want := range []string{"integrity", "one-active-credential", "orphan-row", "wiped-key", "stale-rotation"} {
		if !got[want] {
			t.Errorf("Check did not report %s; got %+v", want, probs)
		}
	}
	if probs, _ := s.Check(ctx, 0); len(probs) != 4 {
		t.Errorf("without the stale check want 4 problems, got %+v", probs)
	}
}
