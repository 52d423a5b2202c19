package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// Device pages read through direct connections: connections that call
// SQLite's C API (modernc.org/sqlite/lib, the same transpiled SQLite the
// database/sql driver runs on) without database/sql and the driver between.
// A page of 1,000 devices fetches some 20,000 column values; through
// database/sql each is boxed into an interface, converted again by Scan and,
// because the driver opens every connection in SQLite's serialized mode,
// fetched under a mutex. A direct connection is opened in multi-thread mode
// (SQLITE_OPEN_NOMUTEX: one goroutine at a time, which directPool gives)
// and copies each value once, into the Go value the page returns.
// docs/store.md, "Direct reads", has the measurements. Everything else the
// store reads or writes goes through database/sql.

// directError is an error SQLite returned on a direct connection. Code is
// the extended result code, as sqlite.Error's Code is (mapErr reads both).
type directError struct {
	code int
	msg  string
}

func (e *directError) Error() string { return e.msg }

// Code is SQLite's extended result code.
func (e *directError) Code() int { return e.code }

// maxDirectStmts bounds each direct connection's prepared statements: a
// page's device query differs with its filters (a few dozen texts in all).
const maxDirectStmts = 64

// directConn is one direct connection. It is not safe for concurrent use.
type directConn struct {
	tls   *libc.TLS
	db    uintptr
	stmts map[string]uintptr
}

// directURI is the file: URI a direct connection opens: the path escaped
// and SQLite's own URI parameters (mode=rw, mode=ro, immutable=1).
func directURI(path string, params url.Values) string {
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + params.Encode()
}

// openDirect opens uri as a read-only connection (query_only) that waits up
// to busy for a lock.
func openDirect(uri string, busy time.Duration) (_ *directConn, err error) {
	c := &directConn{tls: libc.NewTLS(), stmts: map[string]uintptr{}}
	z, err := libc.CString(uri)
	if err != nil {
		c.tls.Close()
		return nil, err
	}
	pdb := libc.Xmalloc(c.tls, 8) // sqlite3 **ppDb
	if pdb == 0 {
		libc.Xfree(c.tls, z)
		c.tls.Close()
		return nil, errors.New("open direct read connection: out of memory")
	}
	rc := sqlite3.Xsqlite3_open_v2(c.tls, z, pdb, sqlite3.SQLITE_OPEN_READWRITE|sqlite3.SQLITE_OPEN_NOMUTEX|
		sqlite3.SQLITE_OPEN_URI|sqlite3.SQLITE_OPEN_EXRESCODE, 0)
	c.db = libc.AtomicLoadPUintptr(pdb)
	libc.Xfree(c.tls, pdb)
	libc.Xfree(c.tls, z)
	if rc != sqlite3.SQLITE_OK {
		err = c.err(rc)
		c.close()
		return nil, err
	}
	if err := c.exec(fmt.Sprintf("PRAGMA busy_timeout = %d; PRAGMA query_only = 1", busy.Milliseconds())); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// err turns a result code into a directError with SQLite's message.
func (c *directConn) err(rc int32) error {
	msg := libc.GoString(sqlite3.Xsqlite3_errstr(c.tls, rc))
	if c.db != 0 {
		if ext := sqlite3.Xsqlite3_extended_errcode(c.tls, c.db); ext&0xff == rc&0xff {
			rc = ext
			msg = libc.GoString(sqlite3.Xsqlite3_errmsg(c.tls, c.db))
		}
	}
	return &directError{code: int(rc), msg: fmt.Sprintf("%s (%d)", msg, rc)}
}

// exec runs statements that return no rows.
func (c *directConn) exec(sql string) error {
	z, err := libc.CString(sql)
	if err != nil {
		return err
	}
	defer libc.Xfree(c.tls, z)
	if rc := sqlite3.Xsqlite3_exec(c.tls, c.db, z, 0, 0, 0); rc != sqlite3.SQLITE_OK {
		return c.err(rc)
	}
	return nil
}

// close finalizes the statements and closes the connection.
func (c *directConn) close() {
	for _, st := range c.stmts {
		sqlite3.Xsqlite3_finalize(c.tls, st)
	}
	clear(c.stmts)
	if c.db != 0 {
		sqlite3.Xsqlite3_close_v2(c.tls, c.db)
		c.db = 0
	}
	c.tls.Close()
}

// prepare compiles query, from the connection's statements when it ran
// before. cached is false for a statement the caller must finalize.
func (c *directConn) prepare(query string) (st uintptr, cached bool, err error) {
	if st := c.stmts[query]; st != 0 {
		return st, true, nil
	}
	z, err := libc.CString(query)
	if err != nil {
		return 0, false, err
	}
	defer libc.Xfree(c.tls, z)
	pst := libc.Xmalloc(c.tls, 8) // sqlite3_stmt **ppStmt
	if pst == 0 {
		return 0, false, errors.New("prepare: out of memory")
	}
	defer libc.Xfree(c.tls, pst)
	cached = len(c.stmts) < maxDirectStmts
	flags := uint32(0)
	if cached {
		flags = sqlite3.SQLITE_PREPARE_PERSISTENT
	}
	if rc := sqlite3.Xsqlite3_prepare_v3(c.tls, c.db, z, -1, flags, pst, 0); rc != sqlite3.SQLITE_OK {
		return 0, false, c.err(rc)
	}
	if st = libc.AtomicLoadPUintptr(pst); st == 0 {
		return 0, false, errors.New("prepare: no statement in the text")
	}
	if cached {
		c.stmts[query] = st
	}
	return st, cached, nil
}

// query runs query with args (strings and integers) and returns its rows,
// which the caller must close. ctx is checked as the rows are stepped.
func (c *directConn) query(ctx context.Context, query string, args ...any) (*directRows, error) {
	st, cached, err := c.prepare(query)
	if err != nil {
		return nil, err
	}
	r := &directRows{ctx: ctx, c: c, st: st, cached: cached}
	for i, a := range args {
		var rc int32
		switch v := a.(type) {
		case string:
			z, err := libc.CString(v)
			if err != nil {
				r.close()
				return nil, err
			}
			r.texts = append(r.texts, z) // bound without a copy (SQLITE_STATIC): freed by close
			rc = sqlite3.Xsqlite3_bind_text(c.tls, st, int32(i+1), z, int32(len(v)), 0)
		case int64:
			rc = sqlite3.Xsqlite3_bind_int64(c.tls, st, int32(i+1), v)
		case int:
			rc = sqlite3.Xsqlite3_bind_int64(c.tls, st, int32(i+1), int64(v))
		default:
			r.close()
			return nil, fmt.Errorf("bind parameter %d: unsupported type %T", i+1, a)
		}
		if rc != sqlite3.SQLITE_OK {
			err := c.err(rc)
			r.close()
			return nil, err
		}
	}
	return r, nil
}

// directRows are the rows of a query on a direct connection. The column
// accessors copy the current row's values into Go memory.
type directRows struct {
	ctx    context.Context
	c      *directConn
	st     uintptr
	cached bool
	texts  []uintptr // bound parameters' C strings
	steps  int
	err    error
}

// directCtxEvery is how many rows are stepped between checks of the context.
const directCtxEvery = 64

// next steps to the next row: false at the end or on an error (see Err).
func (r *directRows) next() bool {
	if r.err != nil {
		return false
	}
	if r.steps++; r.steps%directCtxEvery == 0 {
		if r.err = r.ctx.Err(); r.err != nil {
			return false
		}
	}
	switch rc := sqlite3.Xsqlite3_step(r.c.tls, r.st); rc {
	case sqlite3.SQLITE_ROW:
		return true
	case sqlite3.SQLITE_DONE:
		return false
	default:
		r.err = r.c.err(rc)
		return false
	}
}

// Err is the error that ended the rows, if any.
func (r *directRows) Err() error { return r.err }

// close resets the statement (finalizes one not cached) and frees the
// bound texts.
func (r *directRows) close() {
	tls := r.c.tls
	if r.cached {
		sqlite3.Xsqlite3_reset(tls, r.st)
		sqlite3.Xsqlite3_clear_bindings(tls, r.st)
	} else {
		sqlite3.Xsqlite3_finalize(tls, r.st)
	}
	for _, z := range r.texts {
		libc.Xfree(tls, z)
	}
	r.texts = nil
}

// null reports whether column i of the row is NULL.
func (r *directRows) null(i int) bool {
	return sqlite3.Xsqlite3_column_type(r.c.tls, r.st, int32(i)) == sqlite3.SQLITE_NULL
}

// bytes is column i as text, copied; nil for NULL and "".
func (r *directRows) bytes(i int) []byte {
	p := sqlite3.Xsqlite3_column_text(r.c.tls, r.st, int32(i))
	n := sqlite3.Xsqlite3_column_bytes(r.c.tls, r.st, int32(i))
	if p == 0 || n <= 0 {
		return nil
	}
	return bytes.Clone(libc.GoBytes(p, int(n)))
}

// text is column i as text; "" for NULL.
func (r *directRows) text(i int) string {
	p := sqlite3.Xsqlite3_column_text(r.c.tls, r.st, int32(i))
	n := sqlite3.Xsqlite3_column_bytes(r.c.tls, r.st, int32(i))
	if p == 0 || n <= 0 {
		return ""
	}
	return string(libc.GoBytes(p, int(n)))
}

// int64 is column i as an integer; 0 for NULL.
func (r *directRows) int64(i int) int64 {
	return sqlite3.Xsqlite3_column_int64(r.c.tls, r.st, int32(i))
}

// nano is a nullable Unix-nanosecond column i (fromNano): the zero time
// for NULL.
func (r *directRows) nano(i int) time.Time {
	return fromNano(sql.NullInt64{Int64: r.int64(i), Valid: !r.null(i)})
}

// directPool hands out direct connections, one caller at a time each. Its
// connections are opened with the store and kept (as the read pool's are:
// a connection opened after rekey.db was replaced would read whatever sits
// at the path).
type directPool struct {
	free   chan *directConn
	mu     sync.Mutex
	closed bool
	open   int // connections not yet closed
}

// errDirectClosed: the store was closed.
var errDirectClosed = errors.New("store closed")

// openDirectPool opens n direct connections to uri.
func openDirectPool(uri string, busy time.Duration, n int) (*directPool, error) {
	p := &directPool{free: make(chan *directConn, n)}
	for range n {
		c, err := openDirect(uri, busy)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("open direct read connection: %w", mapErr(err))
		}
		p.free <- c
		p.open++
	}
	return p, nil
}

// get waits for a free connection, until ctx is done.
func (p *directPool) get(ctx context.Context) (*directConn, error) {
	p.mu.Lock()
	closed, open := p.closed, p.open
	p.mu.Unlock()
	switch {
	case closed:
		return nil, errDirectClosed
	case open == 0:
		return nil, errors.New("no direct read connection left (each failed to end a read); restart the agent")
	}
	select {
	case c := <-p.free:
		if c == nil {
			return nil, errDirectClosed
		}
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// put gives c back, or closes it once the pool is closed.
func (p *directPool) put(c *directConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.close()
		p.open--
		return
	}
	p.free <- c
}

// drop closes c instead of giving it back (a read it could not end).
func (p *directPool) drop(c *directConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.close()
	p.open--
}

// close closes the free connections now and the others as they come back.
func (p *directPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	for {
		select {
		case c := <-p.free:
			c.close()
			p.open--
		default:
			close(p.free) // wakes the waiting gets with nil
			return
		}
	}
}

// read runs fn on a direct connection inside one read transaction (one
// snapshot for every query of fn) and ends it.
func (p *directPool) read(ctx context.Context, fn func(*directConn) error) error {
	c, err := p.get(ctx)
	if err != nil {
		return err
	}
	if err := c.exec("BEGIN"); err != nil {
		p.put(c)
		return err
	}
	err = fn(c)
	if end := c.exec("ROLLBACK"); end != nil && sqlite3.Xsqlite3_get_autocommit(c.tls, c.db) == 0 {
		p.drop(c) // still in the transaction: its snapshot would stay
		return errors.Join(err, end)
	}
	p.put(c)
	return err
}
