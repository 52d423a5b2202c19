package store

import (
	"context"
	"database/sql"
	"sync"
)

// SQLite parses and plans a statement's text every time it runs unprepared;
// on the way from a payload to a cut-over that was about a tenth of the
// agent's CPU, and several percent of a device page's. The writer and the
// read pool therefore each keep their statements prepared (one stmtCache
// each):
//
//   - In a transaction (stx), a statement seen before runs through the
//     prepared one, on the transaction's connection; one not seen before
//     runs the plain path and is prepared once the transaction has ended.
//     Preparing inside the transaction could wait forever: database/sql
//     prepares on a free connection of the pool, and the writer's only
//     connection is the transaction's.
//   - Outside a transaction (cachedDB, the read pool), a statement is
//     prepared on first use and then runs prepared on whichever connection
//     the pool hands out (database/sql prepares it on each connection once).

// maxStmts bounds the cache. The store's statements are constant texts (a
// few dozen); the bound only matters if a caller builds texts at run time.
const maxStmts = 256

// stmtCache holds one pool's prepared statements by text.
type stmtCache struct {
	mu sync.Mutex
	// stmts maps a text to its prepared statement, or to nil when it
	// cannot be prepared (it then always runs the plain path).
	stmts  map[string]*sql.Stmt
	wanted map[string]struct{} // seen in a transaction, prepared after it
}

func newStmtCache() *stmtCache {
	return &stmtCache{stmts: map[string]*sql.Stmt{}, wanted: map[string]struct{}{}}
}

// get returns the prepared statement for query, or nil and remembers the
// text to prepare later. A nil cache prepares nothing.
func (c *stmtCache) get(query string) *sql.Stmt {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.stmts[query]
	if !ok && len(c.stmts)+len(c.wanted) < maxStmts {
		c.wanted[query] = struct{}{}
	}
	return st
}

// prepareWanted prepares the texts asked for since the last call. It must
// not run inside a transaction of db (it needs the pool's connection), and
// does not hold the lock while preparing: a transaction on another
// goroutine may be asking get meanwhile.
func (c *stmtCache) prepareWanted(ctx context.Context, db *sql.DB) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if len(c.wanted) == 0 {
		c.mu.Unlock()
		return
	}
	queries := make([]string, 0, len(c.wanted))
	for q := range c.wanted {
		queries = append(queries, q)
	}
	clear(c.wanted)
	c.mu.Unlock()
	for _, q := range queries {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			if ctx.Err() != nil {
				return // asked again the next time the text runs
			}
			st = nil // a text SQLite refuses fails in the transaction too
		}
		c.mu.Lock()
		if old := c.stmts[q]; old != nil {
			if st != nil {
				st.Close() // a concurrent call prepared it meanwhile
			}
		} else {
			c.stmts[q] = st
		}
		c.mu.Unlock()
	}
}

// close closes every prepared statement.
func (c *stmtCache) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.stmts {
		if st != nil {
			st.Close()
		}
		delete(c.stmts, q)
	}
}

// size reports how many texts are prepared (for tests).
func (c *stmtCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, st := range c.stmts {
		if st != nil {
			n++
		}
	}
	return n
}

// stx is a transaction whose statements run prepared when its pool has
// prepared them (stmtCache). Every other method is sql.Tx's.
type stx struct {
	*sql.Tx
	cache *stmtCache
}

// ExecContext runs query in the transaction.
func (t *stx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.cache.get(query); st != nil {
		return t.Tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return t.Tx.ExecContext(ctx, query, args...)
}

// QueryContext runs query in the transaction.
func (t *stx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.cache.get(query); st != nil {
		return t.Tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return t.Tx.QueryContext(ctx, query, args...)
}

// QueryRowContext runs query in the transaction.
func (t *stx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.cache.get(query); st != nil {
		return t.Tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return t.Tx.QueryRowContext(ctx, query, args...)
}

// cachedDB runs statements outside a transaction on a pool, prepared once
// (stmtCache). The caller must hold none of the pool's connections (no open
// Rows or transaction of it), as for any query on the pool.
type cachedDB struct {
	db    *sql.DB
	cache *stmtCache
}

// stmt returns query prepared, preparing it now on first use; nil when the
// cache is full or SQLite refuses the text (it then runs the plain path,
// which fails the same way).
func (d cachedDB) stmt(ctx context.Context, query string) *sql.Stmt {
	st := d.cache.get(query)
	if st == nil {
		d.cache.prepareWanted(ctx, d.db)
		st = d.cache.get(query)
	}
	return st
}

// QueryContext runs query on the pool.
func (d cachedDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := d.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return d.db.QueryContext(ctx, query, args...)
}

// QueryRowContext runs query on the pool.
func (d cachedDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := d.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return d.db.QueryRowContext(ctx, query, args...)
}

// readTx begins a read transaction on the read pool whose statements run
// prepared; end rolls it back and prepares what it asked for.
func (s *Store) readTx(ctx context.Context) (tx *stx, end func(), err error) {
	t, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, nil, err
	}
	return &stx{Tx: t, cache: s.rstmts}, func() {
		t.Rollback()
		s.rstmts.prepareWanted(ctx, s.r)
	}, nil
}
