package store

import (
	"context"
	"fmt"
)

// ExecRaw runs SQL on the writer connection outside any store method: the
// test-only hook for attacking the schema's invariants directly.
func (s *Store) ExecRaw(ctx context.Context, query string, args ...any) error {
	if _, err := s.w.ExecContext(ctx, query, args...); err != nil {
		return mapErr(err)
	}
	return nil
}

// QueryRaw reads one value through the writer connection (test-only).
func (s *Store) QueryRaw(ctx context.Context, dst any, query string, args ...any) error {
	return mapErr(s.w.QueryRowContext(ctx, query, args...).Scan(dst))
}

// BulkDevices inserts n devices with serials prefix+%08d and one coverage
// record each in one statement per table: the fast fixture builder for
// benchmarks (rows no sync would ever write this fast).
func (s *Store) BulkDevices(ctx context.Context, tenantID, prefix string, n int) error {
	at := s.now().UnixNano()
	q := fmt.Sprintf(`WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < %d)
		INSERT INTO devices (tenant_id, serial, model, product_family, status, coverage_state, updated_at)
		SELECT ?1, ?2 || printf('%%08d', i), 'Mac14,2', 'Mac', 'ASSIGNED', 'active', ?3 FROM c;
		WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < %d)
		INSERT INTO coverage (tenant_id, id, serial, description, status, start_date, end_date, updated_at)
		SELECT ?1, 'cov-' || ?2 || printf('%%08d', i), ?2 || printf('%%08d', i), 'AppleCare+', 'ACTIVE',
			'2025-01-01', '2028-01-01', ?3 FROM c;`, n, n)
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, q, tenantID, prefix, at); err != nil {
		return mapErr(err)
	}
	defer s.fresh.gen.Add(1)
	return tx.Commit()
}
