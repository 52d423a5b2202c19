package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func openInternal(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir()+"/state", Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// addAcme adds the tenant "Acme" with one active credential to s and
// returns that credential.
func addAcme(t *testing.T, s *Store) Credential {
	t.Helper()
	_, c, _, err := s.AddCredential(context.Background(), NewCredential{Name: "Acme", ClientID: "BUSINESSAPI.1", KeyID: "k1",
		Scope: "business.api", Origin: OriginManaged, KeyPEM: []byte("not parsed by the store")}, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// bump runs query (which adds its argument to a counter row) in a write
// and returns the counter read back in the same transaction.
func bump(t *testing.T, s *Store, query string, by int) int {
	t.Helper()
	var got int
	err := s.write(context.Background(), "bump", func(tx *stx, _ time.Time) error {
		if _, err := tx.ExecContext(context.Background(), query, by); err != nil {
			return err
		}
		return tx.QueryRowContext(context.Background(), `SELECT n FROM counter`).Scan(&got)
	})
	if err != nil {
		t.Fatalf("bump: %v", err)
	}
	return got
}

func TestWriterStatementsArePreparedOnceAndGiveTheSameResults(t *testing.T) {
	s := openInternal(t)
	if err := s.ExecRaw(context.Background(), `CREATE TABLE counter (n INTEGER NOT NULL); INSERT INTO counter VALUES (0)`); err != nil {
		t.Fatal(err)
	}
	const q = `UPDATE counter SET n = n + ?`
	before := s.stmts.size()
	if got := bump(t, s, q, 2); got != 2 { // plain path, then prepared after the commit
		t.Fatalf("first run: counter %d, want 2", got)
	}
	if s.stmts.size() != before+2 {
		t.Fatalf("prepared %d texts after the first write, want %d (the update and the read)", s.stmts.size(), before+2)
	}
	for i := 1; i <= 20; i++ { // prepared path
		if got := bump(t, s, q, 1); got != 2+i {
			t.Fatalf("run %d: counter %d, want %d", i, got, 2+i)
		}
	}
	if s.stmts.size() != before+2 {
		t.Fatalf("prepared %d texts after repeating them, want %d", s.stmts.size(), before+2)
	}
}

func TestWriterStatementThatSQLiteRefusesFailsEveryTime(t *testing.T) {
	s := openInternal(t)
	for i := 0; i < 3; i++ {
		err := s.write(context.Background(), "bad", func(tx *stx, _ time.Time) error {
			_, err := tx.ExecContext(context.Background(), `UPDATE no_such_table SET x = 1`)
			return err
		})
		if err == nil {
			t.Fatalf("run %d: a statement on a missing table succeeded", i)
		}
	}
	s.stmts.mu.Lock()
	st, known := s.stmts.stmts[`UPDATE no_such_table SET x = 1`]
	s.stmts.mu.Unlock()
	if !known || st != nil {
		t.Fatalf("refused text: known %v, prepared %v; want it remembered as not preparable", known, st != nil)
	}
}

func TestWriterStatementCacheIsBounded(t *testing.T) {
	s := openInternal(t)
	for i := 0; i < maxStmts+50; i++ {
		var got int
		err := s.write(context.Background(), "distinct", func(tx *stx, _ time.Time) error {
			return tx.QueryRowContext(context.Background(), fmt.Sprintf(`SELECT %d + ?`, i), 1).Scan(&got)
		})
		if err != nil || got != i+1 {
			t.Fatalf("text %d: %d, %v; want %d", i, got, err, i+1)
		}
	}
	if n := s.stmts.size(); n > maxStmts {
		t.Fatalf("%d prepared texts, bound is %d", n, maxStmts)
	}
}

func TestWriterStatementsUnderConcurrentWrites(t *testing.T) {
	s := openInternal(t)
	if err := s.ExecRaw(context.Background(), `CREATE TABLE counter (n INTEGER NOT NULL); INSERT INTO counter VALUES (0)`); err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				err := s.write(context.Background(), "bump", func(tx *stx, _ time.Time) error {
					_, err := tx.ExecContext(context.Background(), `UPDATE counter SET n = n + ?`, 1)
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := errors.Join(func() (all []error) {
		for err := range errs {
			all = append(all, err)
		}
		return all
	}()...); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.QueryRaw(context.Background(), &n, `SELECT n FROM counter`); err != nil {
		t.Fatal(err)
	}
	if n != writers*each {
		t.Fatalf("counter %d after %d writes, want %d", n, writers*each, writers*each)
	}
}

func TestReadPoolStatementsArePreparedAndGiveTheSameResults(t *testing.T) {
	s := openInternal(t)
	ctx := context.Background()
	c := addAcme(t, s)
	first, err := s.Overview(ctx) // plain path; prepared at the end
	if err != nil || len(first.Tenants) != 1 || len(first.InUse) != 1 {
		t.Fatalf("first overview: %+v, %v", first, err)
	}
	prepared := s.rstmts.size()
	if prepared < 4 { // tenants, credentials in use, waiting imports, last rotation
		t.Fatalf("%d read statements prepared after an overview, want at least 4", prepared)
	}
	again, err := s.Overview(ctx) // prepared path
	if err != nil || len(again.Tenants) != 1 || again.Tenants[0].ID != first.Tenants[0].ID ||
		len(again.InUse) != 1 || again.InUse[0].ID != first.InUse[0].ID {
		t.Fatalf("second overview: %+v, %v; want %+v", again, err, first)
	}
	if s.rstmts.size() != prepared {
		t.Fatalf("%d read statements after the second overview, want %d", s.rstmts.size(), prepared)
	}
	if _, err := s.Tenant(ctx, c.TenantID); err != nil { // outside a transaction: prepared at once
		t.Fatal(err)
	}
	if s.rstmts.size() != prepared+1 {
		t.Fatalf("%d read statements after reading a tenant, want %d", s.rstmts.size(), prepared+1)
	}
	if _, err := s.Tenant(ctx, "ten_missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing tenant through the prepared statement: %v, want ErrNotFound", err)
	}
}
