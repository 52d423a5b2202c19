package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Freshness says how current a tenant's coverage is, over the devices
// still in the organisation.
type Freshness struct {
	OldestCheck time.Time `json:"oldest_check,omitzero"` // the least recently read device's last read; zero if none was read
	Never       int       `json:"never_checked"`         // devices whose coverage was never read
	Stale       int       `json:"stale"`                 // devices never read or last read before the cut-off
}

// freshnessSQL reads a tenant's Freshness from the devices_by_check index
// alone: each figure is a range of it. The fourth is the first last-read at
// or after the cut-off: until the cut-off passes it, the stale count stays
// what it is (freshCache).
const freshnessSQL = `SELECT
	(SELECT min(coverage_checked_at) FROM devices INDEXED BY devices_by_check
		WHERE tenant_id = ?1 AND coverage_checked_at IS NOT NULL AND released_at IS NULL),
	(SELECT count(*) FROM devices INDEXED BY devices_by_check
		WHERE tenant_id = ?1 AND coverage_checked_at IS NULL AND released_at IS NULL),
	(SELECT count(*) FROM devices INDEXED BY devices_by_check
		WHERE tenant_id = ?1 AND coverage_checked_at < ?2 AND released_at IS NULL),
	(SELECT min(coverage_checked_at) FROM devices INDEXED BY devices_by_check
		WHERE tenant_id = ?1 AND coverage_checked_at >= ?2 AND released_at IS NULL)`

// freshCache keeps each tenant's Freshness between device writes. The
// counts of freshnessSQL are ranges of an index, which at a million devices
// take a hundred milliseconds; the status asks after every change the agent
// makes, most of which (a rotation, an import) touch no device. An answer
// is reused while no transaction that changes devices committed since it
// was read (gen) and the cut-off lies between the one it was read with and
// the next last-read after that one, where the stale count cannot differ.
type freshCache struct {
	gen atomic.Uint64 // bumped after each commit that changed devices (writeDevices)

	mu       sync.Mutex
	byTenant map[string]freshEntry
}

type freshEntry struct {
	gen    uint64
	cutoff int64 // the cut-off it was read with
	next   int64 // the first last-read at or after cutoff; MaxInt64 when none
	f      Freshness
}

// writeDevices is write for a transaction that changes devices or their
// coverage: every such transaction goes through it, so that CoverageFreshness
// reads again after it. The generation moves after the commit: a read that
// saw the data before it is never kept under the new generation.
func (s *Store) writeDevices(ctx context.Context, op string, fn func(tx *stx, now time.Time) error) error {
	defer s.fresh.gen.Add(1)
	return s.write(ctx, op, fn)
}

// CoverageFreshness reports the tenant's Freshness, counting as stale the
// devices last read before olderThan. A store opened for writing answers
// from its cache while nothing it counts can have changed (freshCache); a
// read-only store, whose database another process writes, always reads.
func (s *Store) CoverageFreshness(ctx context.Context, tenantID string, olderThan time.Time) (Freshness, error) {
	cutoff := olderThan.UnixNano()
	cached := s.w != nil
	gen := s.fresh.gen.Load() // before the read: a write committed meanwhile makes the entry stale
	if cached {
		s.fresh.mu.Lock()
		e, ok := s.fresh.byTenant[tenantID]
		s.fresh.mu.Unlock()
		if ok && e.gen == gen && e.cutoff <= cutoff && cutoff <= e.next {
			return e.f, nil
		}
	}
	var f Freshness
	var oldest, next sql.NullInt64
	var older int
	err := s.reads().QueryRowContext(ctx, freshnessSQL, tenantID, cutoff).Scan(&oldest, &f.Never, &older, &next)
	if err != nil {
		return f, fmt.Errorf("read coverage freshness: %w", mapErr(err))
	}
	f.OldestCheck, f.Stale = fromNano(oldest), f.Never+older
	if cached {
		e := freshEntry{gen: gen, cutoff: cutoff, next: math.MaxInt64, f: f}
		if next.Valid {
			e.next = next.Int64
		}
		s.fresh.mu.Lock()
		if s.fresh.byTenant == nil {
			s.fresh.byTenant = make(map[string]freshEntry)
		}
		s.fresh.byTenant[tenantID] = e
		s.fresh.mu.Unlock()
	}
	return f, nil
}
