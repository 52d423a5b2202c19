package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Check runs SQLite's integrity check and verifies every invariant the
// rotation relies on, for `rekey doctor` and for tests. It returns one
// Problem per broken rule (none when healthy); the error is for failures to
// run the checks. Unfinished rotations started more than staleAfter ago are
// reported (staleAfter <= 0 skips that check).
func (s *Store) Check(ctx context.Context, staleAfter time.Duration) ([]Problem, error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("check store: %w", mapErr(err))
	}
	defer tx.Rollback()
	var probs []Problem
	for _, c := range checks(s.now(), staleAfter) {
		rows, err := tx.QueryContext(ctx, c.query, c.args...)
		if err != nil {
			return nil, fmt.Errorf("check %s: %w", c.name, mapErr(err))
		}
		for rows.Next() {
			p := Problem{Check: c.name}
			if err := rows.Scan(&p.Subject, &p.Message); err != nil {
				rows.Close()
				return nil, fmt.Errorf("check %s: %w", c.name, mapErr(err))
			}
			if c.name == "integrity" && p.Message == "ok" {
				continue
			}
			probs = append(probs, p)
		}
		if err := rows.Err(); err != nil {
			rows.Close()
			return nil, fmt.Errorf("check %s: %w", c.name, mapErr(err))
		}
		rows.Close()
	}
	return probs, nil
}

type check struct {
	name  string
	query string // yields (subject, message) per problem
	args  []any
}

func checks(now time.Time, staleAfter time.Duration) []check {
	cs := []check{
		{"integrity", `SELECT '', integrity_check FROM pragma_integrity_check`, nil},
		{"orphan-row", `SELECT "table" || ' row ' || coalesce(rowid, '?'),
			'references a missing ' || parent || ' row' FROM pragma_foreign_key_check`, nil},
		{"one-active-credential", `SELECT t.id, 'tenant has ' || count(c.id) || ' active credentials, expected exactly 1'
			FROM tenants t LEFT JOIN credentials c ON c.tenant_id = t.id AND c.state = 'active'
			GROUP BY t.id HAVING count(c.id) <> 1`, nil},
		{"at-most-one", `SELECT tenant_id, 'tenant has ' || count(*) || ' ' || state || ' credentials'
			FROM credentials WHERE state IN ('previous', 'pending') GROUP BY tenant_id, state HAVING count(*) > 1`, nil},
		{"one-unfinished-rotation", `SELECT tenant_id, 'tenant has ' || count(*) || ' unfinished rotations'
			FROM rotations WHERE step IN ('staged', 'validated') GROUP BY tenant_id HAVING count(*) > 1`, nil},
		{"wiped-key", `SELECT id, state || ' credential still holds key material' FROM credentials
			WHERE state IN ('retired', 'failed') AND sealed_key IS NOT NULL`, nil},
		{"missing-key", `SELECT id, state || ' credential has no key material' FROM credentials
			WHERE state IN ('active', 'previous', 'pending') AND sealed_key IS NULL`, nil},
		{"transient-state", `SELECT id, 'credential left in state ' || state FROM credentials
			WHERE state NOT IN ('pending', 'active', 'previous', 'retired', 'failed')`, nil},
		{"pending-without-rotation", `SELECT c.id, 'pending credential is not the target of an unfinished rotation'
			FROM credentials c WHERE c.state = 'pending' AND NOT EXISTS (SELECT 1 FROM rotations r
			WHERE r.to_credential_id = c.id AND r.step IN ('staged', 'validated'))`, nil},
		{"rotation-mismatch", `SELECT r.id, 'unfinished rotation does not lead to a pending credential'
			FROM rotations r JOIN credentials c ON c.id = r.to_credential_id
			WHERE r.step IN ('staged', 'validated') AND c.state <> 'pending'`, nil},
	}
	for _, c := range counters {
		n := `(SELECT count(*) FROM ` + c.from + ` WHERE x.tenant_id = t.id` + c.where + `)`
		cs = append(cs, check{"counter", `SELECT t.id, 'tenant counts ' || t.` + c.column + ` || ' ` + c.what +
			`, the table holds ' || ` + n + ` || '; see docs/store.md (Counters)' FROM tenants t
			WHERE t.` + c.column + ` <> ` + n, nil})
	}
	if staleAfter > 0 {
		cs = append(cs, check{"stale-rotation", `SELECT id, 'rotation at step ' || step || ' since ' ||
			strftime('%Y-%m-%dT%H:%M:%SZ', started_at / 1000000000, 'unixepoch') || '; resume or fail it'
			FROM rotations WHERE step IN ('staged', 'validated') AND started_at < ?`,
			[]any{now.Add(-staleAfter).UnixNano()}})
	}
	return cs
}

// counters are the tenant row's counters and what each counts.
var counters = []struct{ column, what, from, where string }{
	{"device_count", "devices", "devices x", ""},
	{"coverage_count", "coverage records", "coverage x", ""},
	{"released_count", "released devices", "devices x", " AND x.released_at IS NOT NULL"},
	{"active_count", "active devices", "devices x", " AND x.released_at IS NULL AND x.coverage_state = 'active'"},
	{"expired_count", "expired devices", "devices x", " AND x.released_at IS NULL AND x.coverage_state = 'expired'"},
	{"none_count", "devices without coverage", "devices x", " AND x.released_at IS NULL AND x.coverage_state = 'none'"},
	{"unknown_count", "devices of unknown coverage", "devices x", " AND x.released_at IS NULL AND x.coverage_state = 'unknown'"},
}

// Recount sets every tenant's counters from count(*), in one transaction:
// the repair for a "counter" problem of Check (a hand edit of the database).
func (s *Store) Recount(ctx context.Context) error {
	return s.write(ctx, "recount tenants", func(tx *stx, now time.Time) error {
		for _, c := range counters {
			if _, err := tx.ExecContext(ctx, `UPDATE tenants SET `+c.column+` = (SELECT count(*) FROM `+c.from+
				` WHERE x.tenant_id = tenants.id`+c.where+`)`); err != nil {
				return fmt.Errorf("recount %s: %w", c.column, err)
			}
		}
		return nil
	})
}
