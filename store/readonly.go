package store

import (
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rekeyd/rekey/platform/clock"
)

// Sentinels of a read-only store.
var (
	// ErrNoDatabase: OpenReadOnly found no database file in the state folder.
	ErrNoDatabase = errors.New("no rekey database in the state folder")
	// ErrReadOnly: a write or a key read on a store opened with OpenReadOnly.
	ErrReadOnly = errors.New("store opened read-only")
)

// OpenReadOnly opens the database in dir for reading only, for `rekey doctor`:
// it creates nothing, migrates nothing and loads no sealing key, so writes
// and Key fail with ErrReadOnly. A missing file fails with ErrNoDatabase, a foreign or
// damaged one with ErrNotDatabase and a newer one with ErrNewerSchema, all
// before SQLite reads it. It works beside a running agent (WAL readers do not
// block the writer) and with the agent stopped.
func OpenReadOnly(dir string, opts Options) (*Store, error) {
	if opts.Clock == nil {
		opts.Clock = clock.System{}
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	path := filepath.Join(dir, DBFile)
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("open store %s read-only: %w", path, ErrNoDatabase)
	case err != nil:
		return nil, fmt.Errorf("open store read-only: inspect database file: %w", err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("open store %s read-only: not a regular file: %w", path, ErrNotDatabase)
	case fi.Size() == 0:
		return nil, fmt.Errorf("open store %s read-only: empty file; the agent creates the schema on its next start: %w", path, ErrNotDatabase)
	}
	if err := probe(path); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{path: path, now: func() time.Time { return opts.Clock.Now().UTC() }, rstmts: newStmtCache()}
	immutable := !sidecars(path)
	if s.r, err = sql.Open("sqlite", roDSN(path, opts.BusyTimeout, immutable)); err != nil {
		return nil, fmt.Errorf("open store %s read-only: %w", path, err)
	}
	s.r.SetMaxOpenConns(2)
	var appID, version int
	if err := s.r.QueryRow(`SELECT (SELECT application_id FROM pragma_application_id), (SELECT user_version FROM pragma_user_version)`).Scan(&appID, &version); err != nil {
		s.Close()
		return nil, fmt.Errorf("open store %s read-only: %w", path, mapErr(err))
	}
	if err := (header{userVersion: uint32(version), appID: uint32(appID)}).check(); err != nil {
		s.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	params := url.Values{"mode": {"ro"}}
	if immutable {
		params.Set("immutable", "1")
	}
	if s.pages, err = openDirectPool(directURI(path, params), opts.BusyTimeout, 1); err != nil {
		s.Close()
		return nil, fmt.Errorf("open store %s read-only: %w", path, err)
	}
	return s, nil
}

// roDSN is dsn's read pool with SQLite's own read-only mode on top, so that
// not even a WAL checkpoint writes to the file. Without WAL sidecar files no
// agent has the database open (a WAL writer keeps both while it runs) and
// nothing is pending in a WAL: the file is then read as immutable, which
// creates no -wal or -shm file beside it.
func roDSN(path string, timeout time.Duration, immutable bool) string {
	mode := "?mode=ro&"
	if immutable {
		mode += "immutable=1&"
	}
	return strings.Replace(dsn(path, timeout, true), "?", mode, 1)
}

// sidecars reports whether a -wal or -shm file is beside the database.
func sidecars(path string) bool {
	for _, side := range []string{"-wal", "-shm"} {
		if _, err := os.Lstat(path + side); !errors.Is(err, fs.ErrNotExist) {
			return true
		}
	}
	return false
}
