package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"modernc.org/sqlite"
)

// SQLite primary result codes the store translates into sentinels.
const (
	sqliteCorrupt    = 11
	sqliteNotADB     = 26
	sqliteConstraint = 19
	sqliteBusy       = 5
	// sqliteDBMoved is SQLITE_READONLY_DBMOVED: the file was unlinked or
	// renamed over since it was opened, so writes go nowhere durable.
	sqliteDBMoved = 8 | 4<<8
)

// ErrDBMoved: rekey.db was deleted or replaced while the store had it open.
// Nothing more can be recorded until the agent restarts on a restored file.
var ErrDBMoved = errors.New("database file deleted or replaced while open; stop the agent, restore rekey.db from backup and start it again")

// sqliteError is an error SQLite returned, through the database/sql driver
// (*sqlite.Error) or a direct connection (*directError).
type sqliteError interface {
	error
	Code() int // the extended result code
}

// sqliteErr finds the SQLite error in err's chain.
func sqliteErr(err error) (sqliteError, bool) {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se, true
	}
	var de *directError
	if errors.As(err, &de) {
		return de, true
	}
	return nil, false
}

// isBusy reports whether err is SQLITE_BUSY (any extended code).
func isBusy(err error) bool {
	se, ok := sqliteErr(err)
	return ok && se.Code()&0xff == sqliteBusy
}

// mapErr wraps SQLite errors callers branch on in the store's sentinels. The
// SQLite message names the rule (an index, a trigger's text), never a value.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	se, ok := sqliteErr(err)
	if !ok {
		return err
	}
	if se.Code() == sqliteDBMoved {
		return fmt.Errorf("%w: %s", ErrDBMoved, se.Error())
	}
	switch se.Code() & 0xff {
	case sqliteConstraint:
		return fmt.Errorf("%w: %s", ErrInvariant, se.Error())
	case sqliteNotADB, sqliteCorrupt:
		return fmt.Errorf("%w: %s", ErrNotDatabase, se.Error())
	}
	return err
}

// sameFile fails with ErrDBMoved when the database path no longer names the
// file the store opened (deleted, or replaced by a rename). SQLite in WAL mode
// would go on committing into the unlinked file, losing every write at the
// next start.
func (s *Store) sameFile() error {
	if s.ident == nil {
		return nil
	}
	fi, err := os.Stat(s.path)
	if err != nil || !os.SameFile(fi, s.ident) {
		what := "replaced"
		if errors.Is(err, fs.ErrNotExist) {
			what = "deleted"
		}
		return fmt.Errorf("%w (%s was %s)", ErrDBMoved, s.path, what)
	}
	return nil
}

// write runs fn in one BEGIN IMMEDIATE transaction on the writer and commits.
// op names the operation in the error ("stage rotation").
func (s *Store) write(ctx context.Context, op string, fn func(tx *stx, now time.Time) error) error {
	if s.w == nil {
		return fmt.Errorf("%s: %w", op, ErrReadOnly)
	}
	if err := s.sameFile(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: begin: %w", op, mapErr(err))
	}
	// Deferred first so that it runs last, on a free connection.
	defer s.stmts.prepareWanted(ctx, s.w)
	defer tx.Rollback()
	if err := fn(&stx{Tx: tx, cache: s.stmts}, s.now()); err != nil {
		return fmt.Errorf("%s: %w", op, mapErr(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: commit: %w", op, mapErr(err))
	}
	s.payWipeDebt(ctx)
	return nil
}

// queryer is what read helpers need: a transaction or the read pool.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// newID returns prefix + 12 random hex digits, e.g. "ten_3f9a0c41d2e7".
func newID(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b) // never fails (crypto/rand panics instead)
	return prefix + hex.EncodeToString(b)
}

// nano stores a time as Unix nanoseconds; the zero time is NULL.
func nano(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

// fromNano reads a nullable Unix-nanosecond column.
func fromNano(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

// nullStr stores "" as NULL (for foreign-key columns).
func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// attrsValue is the stored form of a device's or record's attributes:
// NULL when empty, else the JSON compacted. Stored attributes are always
// valid, compact JSON, which a device page relies on to send them as they
// are (docs/store.md, "Attributes"); anything else is refused.
func attrsValue(m json.RawMessage) (any, error) {
	if len(m) == 0 {
		return nil, nil
	}
	var b bytes.Buffer
	b.Grow(len(m))
	if err := json.Compact(&b, m); err != nil {
		return nil, fmt.Errorf("attributes are not valid JSON (%v); store Apple's attributes as received: %w", err, ErrInvariant)
	}
	return b.String(), nil
}

// insertEvent appends one audit event inside tx and returns it with its Seq.
func insertEvent(ctx context.Context, tx *stx, now time.Time, e Event) (Event, error) {
	if e.Kind == "" {
		return Event{}, errors.New("append event: empty kind; name what happened, e.g. rotation.cutover")
	}
	if e.Time.IsZero() {
		e.Time = now
	}
	e.Time = e.Time.UTC()
	var fields any
	if len(e.Fields) > 0 {
		b, err := json.Marshal(e.Fields)
		if err != nil {
			return Event{}, fmt.Errorf("encode event fields: %w", err)
		}
		fields = string(b)
	}
	err := tx.QueryRowContext(ctx, `INSERT INTO events
		(time, kind, tenant_id, import_id, credential_id, rotation_id, message, fields)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`,
		e.Time.UnixNano(), e.Kind, nullStr(e.TenantID), nullStr(e.ImportID),
		nullStr(e.CredentialID), nullStr(e.RotationID), e.Message, fields).Scan(&e.Seq)
	if err != nil {
		return Event{}, fmt.Errorf("append event %s: %w", e.Kind, err)
	}
	return e, nil
}

// AppendEvent appends one event to the audit log in its own transaction.
func (s *Store) AppendEvent(ctx context.Context, e Event) (Event, error) {
	var out Event
	err := s.write(ctx, "append event", func(tx *stx, now time.Time) error {
		var err error
		out, err = insertEvent(ctx, tx, now, e)
		return err
	})
	return out, err
}

// Events returns up to limit events with Seq > afterSeq, oldest first
// (limit <= 0 means 100, at most 1000).
func (s *Store) Events(ctx context.Context, afterSeq int64, limit int) ([]Event, error) {
	limit = clampLimit(limit)
	rows, err := s.reads().QueryContext(ctx, `SELECT seq, time, kind, coalesce(tenant_id, ''), coalesce(import_id, ''),
		coalesce(credential_id, ''), coalesce(rotation_id, ''), message, fields
		FROM events WHERE seq > CAST(? AS INTEGER) ORDER BY seq LIMIT CAST(? AS INTEGER)`, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", mapErr(err))
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var t int64
		var fields sql.NullString
		if err := rows.Scan(&e.Seq, &t, &e.Kind, &e.TenantID, &e.ImportID, &e.CredentialID,
			&e.RotationID, &e.Message, &fields); err != nil {
			return nil, fmt.Errorf("list events: %w", mapErr(err))
		}
		e.Time = time.Unix(0, t).UTC()
		if fields.Valid {
			if err := json.Unmarshal([]byte(fields.String), &e.Fields); err != nil {
				return nil, fmt.Errorf("list events: decode fields of event %d: %w", e.Seq, err)
			}
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list events: %w", mapErr(err))
	}
	return out, nil
}

func clampLimit(limit int) int {
	switch {
	case limit <= 0:
		return 100
	case limit > 1000:
		return 1000
	}
	return limit
}
