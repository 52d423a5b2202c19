// Package store keeps rekey's tenants, credentials, imports, rotations,
// devices and audit log in one SQLite file, and is the only package that opens it.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, pure Go

	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/platform/clock"
)

// File names inside the state folder.
const (
	DBFile      = "rekey.db"
	SealKeyFile = "seal.key"
	// LockFile is the agent's lock: one agent per state folder, its pid inside.
	LockFile = "agent.lock"
)

// Options tune Open. The zero value is ready to use.
type Options struct {
	// Clock is the clock for every timestamp the store writes (default: the
	// real clock).
	Clock clock.Clock
	// BusyTimeout is how long a statement waits for a lock held by another
	// connection or process before failing (default 5s).
	BusyTimeout time.Duration
}

// Store is an open rekey database. It is safe for concurrent use: writes go
// through a single connection, one BEGIN IMMEDIATE transaction each; reads use
// a pool of read-only connections.
type Store struct {
	path string
	now  func() time.Time
	w    *sql.DB // the writer: MaxOpenConns(1), _txlock=immediate
	r    *sql.DB // the read pool: query_only
	seal *sealer
	// ident is the database file as opened; a write refuses to go on when
	// the path names another file or none (see sameFile).
	ident os.FileInfo
	// wipeOwed is set when the checkpoint after a wipe could not complete
	// (a reader held an old snapshot past the busy timeout); later writes
	// then checkpoint until one completes.
	wipeOwed atomic.Bool
	fresh    freshCache  // CoverageFreshness between device writes
	stmts    *stmtCache  // the writer's prepared statements
	rstmts   *stmtCache  // the read pool's
	pages    *directPool // device pages' connections (direct.go)
}

// reads is the read pool with its prepared statements.
func (s *Store) reads() cachedDB { return cachedDB{db: s.r, cache: s.rstmts} }

// Open opens (creating where needed) the database in dir: the folder 0700
// (checked by platform.PrepareStateDir: owned by the caller's uid, not
// writable by group or others), rekey.db 0600 and the sealing key seal.key 0600, then applies the embedded
// migrations. A file that is not a rekey database fails with ErrNotDatabase
// and one written by a newer rekey with ErrNewerSchema; neither is modified.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Clock == nil {
		opts.Clock = clock.System{}
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	if dir == "" {
		return nil, errors.New("open store: empty state folder; pass the state folder path")
	}
	if err := platform.PrepareStateDir(dir, os.Geteuid()); err != nil {
		return nil, fmt.Errorf("open store: check state folder: %w", err)
	}
	if err := writableFS(dir); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	path := filepath.Join(dir, DBFile)
	if err := CheckPair(dir); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := prepareDBFile(path); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := probe(path); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{path: path, now: func() time.Time { return opts.Clock.Now().UTC() }, stmts: newStmtCache(), rstmts: newStmtCache()}
	var err error
	if s.w, err = sql.Open("sqlite", dsn(path, opts.BusyTimeout, false)); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	if err := s.migrate(context.Background(), opts.BusyTimeout); err != nil {
		s.w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// A wipe whose checkpoint a crash cut short leaves the WAL now.
	s.checkpointWipe(context.Background())
	if err := fixSidecarModes(path); err != nil {
		s.w.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	if s.ident, err = os.Stat(path); err != nil {
		s.w.Close()
		return nil, fmt.Errorf("open store: inspect database file: %w", err)
	}
	// The read pool never creates the file (mode=rw) and opens all its
	// connections now and keeps them: a reader opened after rekey.db was
	// deleted or replaced would see the old WAL through whatever sits at the
	// path and checkpoint that WAL into it when it closes.
	if s.r, err = sql.Open("sqlite", strings.Replace(dsn(path, opts.BusyTimeout, true), "?", "?mode=rw&", 1)); err != nil {
		s.w.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.r.SetMaxOpenConns(readers)
	s.r.SetMaxIdleConns(readers)
	if err := warm(s.r, readers); err != nil {
		s.Close()
		return nil, fmt.Errorf("open store: open read connections: %w", err)
	}
	if s.pages, err = openDirectPool(directURI(path, url.Values{"mode": {"rw"}}), opts.BusyTimeout, pageReaders); err != nil {
		s.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	if s.seal, err = s.loadSealer(dir); err != nil {
		s.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	return s, nil
}

// Path is the database file's path.
func (s *Store) Path() string { return s.path }

// Close closes every connection and forgets the sealing key.
func (s *Store) Close() error {
	var errs []error
	if s.pages != nil {
		s.pages.close()
	}
	if s.r != nil {
		s.rstmts.close()
		errs = append(errs, s.r.Close())
	}
	if s.w != nil {
		s.stmts.close()
		errs = append(errs, s.w.Close())
	}
	if s.seal != nil {
		s.seal.wipe()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// readers is the size of the read pool.
const readers = 4

// warm opens n connections of db at once so that the pool holds them from
// the start; database/sql keeps idle connections for good by default.
func warm(db *sql.DB, n int) error {
	ctx := context.Background()
	conns := make([]*sql.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		if err := c.PingContext(ctx); err != nil {
			c.Close()
			return err
		}
		conns = append(conns, c)
	}
	return nil
}

// dsn builds the connection string. busy_timeout comes first so that the
// pragmas after it wait for locks instead of failing.
func dsn(path string, timeout time.Duration, readOnly bool) string {
	q := url.Values{}
	pragmas := []string{fmt.Sprintf("busy_timeout(%d)", timeout.Milliseconds())}
	if readOnly {
		pragmas = append(pragmas, "query_only(1)", "foreign_keys(1)")
		q.Set("_txlock", "deferred")
	} else {
		pragmas = append(pragmas, "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)", "secure_delete(ON)")
		q.Set("_txlock", "immediate")
	}
	q["_pragma"] = pragmas
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// CheckPair refuses a state folder holding the sealing key without the
// database, or with an empty (0-byte) database: starting on a new, empty
// database would apply every payload again as new tenants and lose the old
// ones for good. The store never leaves an empty database beside the key: the
// file gets its header when WAL mode is set, before the key is created.
// rekey doctor applies the same rule.
func CheckPair(dir string) error {
	db, dbErr := os.Lstat(filepath.Join(dir, DBFile))
	_, keyErr := os.Lstat(filepath.Join(dir, SealKeyFile))
	if keyErr != nil {
		return nil
	}
	switch {
	case errors.Is(dbErr, fs.ErrNotExist):
		return fmt.Errorf("%w: %s is there but %s is missing; restore %s (with its -wal file) from backup, "+
			"or, to start over with no credentials, move %s aside", ErrHalfState, SealKeyFile, DBFile, DBFile, SealKeyFile)
	case dbErr == nil && db.Mode().IsRegular() && db.Size() == 0:
		return fmt.Errorf("%w: %s is there but %s is empty (0 bytes); restore %s (with its -wal file) from backup, "+
			"or, to start over with no credentials, move both aside", ErrHalfState, SealKeyFile, DBFile, DBFile)
	}
	return nil
}

// prepareDBFile creates the database file empty with mode 0600 (SQLite treats
// an empty file as a new database), or narrows an existing one to 0600.
func prepareDBFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		return f.Close()
	}
	if !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create database file: %w", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("inspect database file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("database %s is not a regular file: %w", path, ErrNotDatabase)
	}
	if fi.Mode().Perm() != 0o600 {
		if err := os.Chmod(path, 0o600); err != nil {
			return fmt.Errorf("narrow database file to 0600: %w", err)
		}
	}
	return nil
}

// fixSidecarModes narrows the WAL and shared-memory files to 0600 if present.
func fixSidecarModes(path string) error {
	for _, p := range []string{path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("inspect %s: %w", filepath.Base(p), err)
		}
		if fi.Mode().Perm() != 0o600 {
			if err := os.Chmod(p, 0o600); err != nil {
				return fmt.Errorf("narrow %s to 0600: %w", filepath.Base(p), err)
			}
		}
	}
	return nil
}
