package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	sqlite3 "modernc.org/sqlite/lib"
)

// TestPreparedStatementsAreNotPlannedAgain runs the store's work of a
// rotation, a sync and the status reads, then checks each statement the
// writer and the read pool kept prepared: binding a value must not expire
// it. SQLite expires a statement whose plan looked at a bound value (a
// LIMIT, a partial index's condition, a comparison on a STRICT table with
// ORDER BY), and then parses and plans it again at every run.
func TestPreparedStatementsAreNotPlannedAgain(t *testing.T) {
	s := openInternal(t)
	ctx := context.Background()
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	c := addAcme(t, s)
	ten := Tenant{ID: c.TenantID}
	for i := range 3 { // twice to prepare what the first saw, once to run it prepared
		im, _, err := s.RecordImport(ctx, Import{ID: fmt.Sprint("imp", i), Hash: fmt.Sprint("h", i), Source: "src", State: ImportApplying})
		check("record import", err)
		r, _, _, err := s.Stage(ctx, ten.ID, NewCredential{Name: "Acme", ClientID: "BUSINESSAPI.1", KeyID: fmt.Sprint("k", i+2),
			Scope: "business.api", Origin: OriginManaged, KeyPEM: []byte("y"), ImportID: im.ID})
		check("stage", err)
		_, err = s.ValidateAndCutover(ctx, r.ID)
		check("cut over", err)
		s.FinishWipes(ctx)
		_, err = s.Confirm(ctx, ten.ID, r.ToCredentialID)
		check("confirm", err)
		_, err = s.Overview(ctx)
		check("overview", err)
		_, err = s.Tenant(ctx, ten.ID)
		check("tenant", err)
		_, err = s.Events(ctx, 0, 100)
		check("events", err)
		_, err = s.ImportsOf(ctx, ten.ID, ImportApplied, ImportFailed)
		check("imports of", err)
		_, err = s.WithdrawCandidates(ctx, "src")
		check("withdraw candidates", err)
		check("mark auth", s.MarkAuth(ctx, c.ID, time.Now()))
		_, err = s.CoverageFreshness(ctx, ten.ID, time.Now())
		check("freshness", err)
		serial := fmt.Sprint("S", i)
		_, err = s.BeginPass(ctx, ten.ID)
		check("begin pass", err)
		_, err = s.SyncPage(ctx, ten.ID, []Device{{Serial: serial, Model: "m"}}, "")
		check("sync page", err)
		_, err = s.CoverageDue(ctx, ten.ID, time.Now(), 0, 10)
		check("coverage due", err)
		check("coverage", s.UpsertCoverage(ctx, ten.ID, []DeviceCoverage{{Serial: serial,
			Records: []Coverage{{ID: "c", Serial: serial, Status: "ACTIVE"}}}}))
		check("end pass", s.EndPass(ctx, ten.ID, time.Now()))
		_, _, err = s.UnlockLimit(ctx, im.ID)
		check("unlock limit", err)
	}
	s.stmts.prepareWanted(ctx, s.w)
	s.rstmts.prepareWanted(ctx, s.r)
	err := s.pages.read(ctx, func(dc *directConn) error {
		for name, cache := range map[string]*stmtCache{"writer": s.stmts, "read pool": s.rstmts} {
			if len(cache.stmts) < 10 {
				t.Errorf("%s: only %d statements prepared", name, len(cache.stmts))
			}
			for query := range cache.stmts {
				st, cached, err := dc.prepare(query)
				if err != nil {
					return fmt.Errorf("%s: %w: %s", name, err, query)
				}
				for i := range sqlite3.Xsqlite3_bind_parameter_count(dc.tls, st) {
					sqlite3.Xsqlite3_bind_null(dc.tls, st, i+1)
					if sqlite3.Xsqlite3_expired(dc.tls, st) != 0 {
						t.Errorf("%s: binding parameter %d expires the statement: %s", name, i+1, query)
						break
					}
				}
				if cached { // not the direct connection's to keep
					delete(dc.stmts, query)
				}
				sqlite3.Xsqlite3_finalize(dc.tls, st)
			}
		}
		return nil
	})
	check("inspect statements", err)
}
