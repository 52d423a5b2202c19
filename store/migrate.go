package store

import (
	"context"
	"embed"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// applicationID marks a SQLite file as rekey's ("rkey", header offset 68).
const applicationID = 0x726b6579

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order. File names
// are NNNN_name.sql; versions start at 1 and have no gaps.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration %q is not named NNNN_name.sql", e.Name())
		}
		b, err := migrationFS.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: expected version %d", m.name, i+1)
		}
	}
	return ms, nil
}

// SchemaVersion is the newest schema version this build knows.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil {
		return 0
	}
	return len(ms)
}

// header is what probe reads from the first 100 bytes of the file.
type header struct {
	userVersion uint32
	appID       uint32
	pages       int64
}

// probe reads the file's header bytes before any SQLite code touches it, so
// that a foreign or newer file is refused without being modified.
func probe(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read database header: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("read database header: %w", err)
	}
	if fi.Size() == 0 {
		return nil // a new database
	}
	buf := make([]byte, 100)
	if _, err := io.ReadFull(f, buf); err != nil {
		return fmt.Errorf("file is shorter than a SQLite header (%d bytes); move it away: %w", fi.Size(), ErrNotDatabase)
	}
	if string(buf[:16]) != "SQLite format 3\x00" {
		return fmt.Errorf("no SQLite header; move the file away or pass another state folder: %w", ErrNotDatabase)
	}
	pageSize := int64(binary.BigEndian.Uint16(buf[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	h := header{
		userVersion: binary.BigEndian.Uint32(buf[60:64]),
		appID:       binary.BigEndian.Uint32(buf[68:72]),
	}
	if pageSize >= 512 {
		h.pages = fi.Size() / pageSize
	}
	return h.check()
}

func (h header) check() error {
	switch {
	case h.appID == applicationID:
	case h.appID == 0 && h.userVersion == 0 && h.pages <= 1:
		// An empty database: only the header page, written by the WAL switch
		// before the first migration committed (its commit may still be in the WAL).
	default:
		return fmt.Errorf("SQLite database of another application (application_id %#x); move it away or pass another state folder: %w", h.appID, ErrNotDatabase)
	}
	if latest := SchemaVersion(); int(h.userVersion) > latest {
		return fmt.Errorf("schema version %d, this rekey knows up to %d; upgrade rekey: %w", h.userVersion, latest, ErrNewerSchema)
	}
	return nil
}

// migrate re-checks the identity through SQLite (the WAL may hold a newer
// header than the file) and applies each missing migration in its own
// transaction, setting PRAGMA user_version in the same transaction.
func (s *Store) migrate(ctx context.Context, busyTimeout time.Duration) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	var h header
	var tables int64
	// The first statement opens the connection, whose DSN switches a new file
	// to WAL. While another process does the same, SQLite answers SQLITE_BUSY
	// at once rather than wait (it would deadlock), so retry within the busy timeout.
	for wait := time.Millisecond; ; wait *= 2 {
		err = s.w.QueryRowContext(ctx, `SELECT (SELECT user_version FROM pragma_user_version),
			(SELECT application_id FROM pragma_application_id), (SELECT count(*) FROM sqlite_schema)`).
			Scan(&h.userVersion, &h.appID, &tables)
		if !isBusy(err) || wait > busyTimeout {
			break
		}
		time.Sleep(wait)
	}
	if err != nil {
		return fmt.Errorf("read schema version: %w", mapErr(err))
	}
	if h.appID == 0 && h.userVersion == 0 && tables > 0 {
		return fmt.Errorf("SQLite database of another application; move it away or pass another state folder: %w", ErrNotDatabase)
	}
	if tables == 0 {
		h.pages = 1 // nothing in it yet
	}
	if err := h.check(); err != nil {
		return err
	}
	for _, m := range ms[h.userVersion:] {
		if err := s.apply(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) apply(ctx context.Context, m migration) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin migration %s: %w", m.name, mapErr(err))
	}
	defer tx.Rollback()
	// Another process may have applied it since migrate read the version.
	var current int
	if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&current); err != nil {
		return fmt.Errorf("read schema version: %w", mapErr(err))
	}
	if current >= m.version {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return fmt.Errorf("apply migration %s: %w", m.name, mapErr(err))
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.version)); err != nil {
		return fmt.Errorf("record migration %s: %w", m.name, mapErr(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit migration %s: %w", m.name, mapErr(err))
	}
	return nil
}
