package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrBadQuery: a device query names an unknown filter value. The message
// says which and what the choices are.
var ErrBadQuery = errors.New("bad device query")

// Values of DeviceQuery.Released.
const (
	ReleasedInclude = "include" // every device (the default)
	ReleasedExclude = "exclude" // devices still in the organisation
	ReleasedOnly    = "only"    // devices that left it
)

// DeviceQuery selects a page of a tenant's devices, in serial order.
type DeviceQuery struct {
	After        string    // serials greater than this
	Limit        int       // <= 0 means 100, at most 1000
	Coverage     string    // "" for any, else a coverage state
	EndBefore    time.Time // only devices whose latest coverage end is before this
	SerialPrefix string    // only serials that begin with this
	Released     string    // ReleasedInclude (also ""), ReleasedExclude or ReleasedOnly
}

// where returns the query's filter as SQL over devices d and its arguments.
func (q DeviceQuery) where(tenantID string) (string, []any, error) {
	conds := []string{"d.tenant_id = ?", "d.serial > ?"}
	args := []any{tenantID, q.After}
	switch q.Coverage {
	case "":
	case CoverageActive, CoverageExpired, CoverageNone, CoverageUnknown:
		conds, args = append(conds, "d.coverage_state = ?"), append(args, q.Coverage)
	default:
		return "", nil, fmt.Errorf("%w: coverage %q: use active, expired, none or unknown", ErrBadQuery, q.Coverage)
	}
	if !q.EndBefore.IsZero() {
		conds, args = append(conds, "d.coverage_end < ?"), append(args, q.EndBefore.UnixNano())
	}
	if q.SerialPrefix != "" {
		// A range on the key, so the prefix is a seek, not a scan.
		conds = append(conds, "d.serial >= ?", "d.serial < ?")
		args = append(args, q.SerialPrefix, q.SerialPrefix+"\U0010FFFF")
	}
	switch q.Released {
	case "", ReleasedInclude:
	case ReleasedExclude:
		conds = append(conds, "d.released_at IS NULL")
	case ReleasedOnly:
		conds = append(conds, "d.released_at IS NOT NULL")
	default:
		return "", nil, fmt.Errorf("%w: released %q: use include, exclude or only", ErrBadQuery, q.Released)
	}
	return strings.Join(conds, " AND "), args, nil
}

// dense reports whether a page holds every device between its first and
// last serial: no filter but the cursor and a serial prefix.
func (q DeviceQuery) dense() bool {
	return q.Coverage == "" && q.EndBefore.IsZero() && (q.Released == "" || q.Released == ReleasedInclude)
}

const coverageCols = `id, serial, description, status, payment_type, is_renewable, is_canceled,
	agreement_number, contract_cancel_date, start_date, end_date, attrs`

// coverageRangeSQL reads the coverage of a dense part of a page
// (StreamDevices): one range of the primary key, from the part's first
// serial to its last.
const coverageRangeSQL = `SELECT ` + coverageCols + ` FROM coverage
	WHERE tenant_id = ?1 AND serial >= ?2 AND serial <= ?3 ORDER BY serial, id`

// coverageListSQL reads the coverage of a filtered part, whose serials (a
// JSON array) may lie far apart: the same range, but only the records of
// the part's devices leave SQLite (the unary + keeps the list out of the
// index choice: a seek per device costs more than stepping over the
// records in between, which the device query stepped over already).
const coverageListSQL = `SELECT ` + coverageCols + ` FROM coverage
	WHERE tenant_id = ?1 AND serial >= ?2 AND serial <= ?3 AND +serial IN (SELECT value FROM json_each(?4))
	ORDER BY serial, id`

const deviceCols = `d.serial, d.apple_id, d.model, d.product_family, d.status, d.attrs, d.coverage_state,
	d.coverage_end, d.coverage_checked_at, d.released_at, d.updated_at`

// streamBatch is how many devices StreamDevices hands over at a time.
const streamBatch = 100

// ListDevices returns one page of the tenant's devices that match q, each
// with its coverage records, and the serial to pass as After for the next
// page ("" on the last page).
func (s *Store) ListDevices(ctx context.Context, tenantID string, q DeviceQuery) ([]Device, string, error) {
	var devs []Device
	next, err := s.StreamDevices(ctx, tenantID, q, func(batch []Device) error {
		devs = append(devs, batch...)
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return devs, next, nil
}

// StreamDevices reads the page ListDevices returns, in one snapshot, and
// hands it to emit in serial order, in batches of up to 100 devices each
// with its coverage records: a batch goes out as soon as the last of its
// records is read, so that a caller can encode and send it while SQLite
// reads the rest. It returns the serial to pass as After for the next page.
// The batches are slices of one array, emit's to keep but not to append to.
// An error of emit stops the read and is returned; an unknown tenant fails
// with ErrNotFound before any batch.
func (s *Store) StreamDevices(ctx context.Context, tenantID string, q DeviceQuery, emit func([]Device) error) (string, error) {
	limit := clampLimit(q.Limit)
	where, args, err := q.where(tenantID)
	if err != nil {
		return "", fmt.Errorf("list devices: %w", err)
	}
	tx, end, err := s.readTx(ctx) // one snapshot for every query
	if err != nil {
		return "", fmt.Errorf("list devices: %w", mapErr(err))
	}
	defer end()
	if err := tenantExists(ctx, tx, tenantID); err != nil {
		return "", fmt.Errorf("list devices: %w", err)
	}
	// The page is read in parts of pageChunk devices, each part's
	// coverage after it, so that the first batches go out while the
	// later parts are read.
	query := `SELECT ` + deviceCols + ` FROM devices d WHERE ` + where + ` ORDER BY d.serial LIMIT ?`
	for read := 0; read < limit; {
		n := min(limit-read, pageChunk)
		devs, err := listRows(ctx, tx, scanDevice, "devices", n, query, append(args, n)...)
		if err != nil || len(devs) == 0 {
			return "", err
		}
		if err := streamCoverage(ctx, tx, tenantID, q.dense(), devs, emit); err != nil {
			return "", err
		}
		if read += len(devs); len(devs) < n {
			return "", nil
		}
		args[1] = devs[len(devs)-1].Serial // the cursor: d.serial > ?
	}
	return args[1].(string), nil
}

// pageChunk is how many devices StreamDevices reads at a time.
const pageChunk = 250

// streamCoverage reads the coverage records of devs (in serial order),
// gives each device its run of them (a slice of one array, capped so that
// an append copies instead of overwriting the next device's) and emits the
// devices in batches as they are complete.
func streamCoverage(ctx context.Context, tx *stx, tenantID string, dense bool, devs []Device, emit func([]Device) error) error {
	first, last := devs[0].Serial, devs[len(devs)-1].Serial
	var rows *sql.Rows
	var err error
	if dense {
		rows, err = tx.QueryContext(ctx, coverageRangeSQL, tenantID, first, last)
	} else {
		serials := make([]string, len(devs))
		for i, d := range devs {
			serials[i] = d.Serial
		}
		list, _ := json.Marshal(serials) // strings always encode
		rows, err = tx.QueryContext(ctx, coverageListSQL, tenantID, first, last, string(list))
	}
	if err != nil {
		return fmt.Errorf("list coverage: %w", mapErr(err))
	}
	defer rows.Close()
	covs := make([]Coverage, 0, len(devs))
	done, sent := 0, 0 // devices complete, devices emitted
	// complete marks the devices before serial as complete and emits every
	// full batch of them.
	complete := func(serial string, all bool) error {
		for done < len(devs) && (all || devs[done].Serial < serial) {
			done++
		}
		for done-sent >= streamBatch || (all && sent < done) {
			n := min(streamBatch, done-sent)
			if err := emit(devs[sent : sent+n : sent+n]); err != nil {
				return err
			}
			sent += n
		}
		return nil
	}
	i, start := 0, 0 // the device whose records are being read, and where its run starts in covs
	for rows.Next() {
		c, err := scanCoverage(rows)
		if err != nil {
			return fmt.Errorf("list coverage: %w", mapErr(err))
		}
		for i < len(devs) && devs[i].Serial < c.Serial {
			i++
		}
		if i == len(devs) || devs[i].Serial != c.Serial {
			continue // a record of a device outside a filtered page
		}
		if len(covs) > start && covs[start].Serial != c.Serial {
			start = len(covs) // the first record of device i
		}
		if len(covs) == cap(covs) {
			// A new array for the run of device i and those after it; the
			// runs already given out keep the old one.
			covs, start = append(make([]Coverage, 0, 2*cap(covs)+1), covs[start:]...), 0
		}
		covs = append(covs, c)
		devs[i].Coverage = covs[start:len(covs):len(covs)]
		if err := complete(c.Serial, false); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list coverage: %w", mapErr(err))
	}
	return complete("", true)
}

// Devices returns up to limit devices of the tenant with serial > after, in
// serial order, each with its coverage records, and the cursor for the next
// page ("" on the last page). limit <= 0 means 100, at most 1000.
func (s *Store) Devices(ctx context.Context, tenantID, after string, limit int) ([]Device, string, error) {
	return s.ListDevices(ctx, tenantID, DeviceQuery{After: after, Limit: limit})
}

// listRows is getAll with room for size rows allocated up front.
func listRows[T any](ctx context.Context, q queryer, scan func(*sql.Rows) (T, error), what string, size int,
	query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", what, mapErr(err))
	}
	defer rows.Close()
	out := make([]T, 0, size)
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", what, mapErr(err))
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", what, mapErr(err))
	}
	return out, nil
}

// The scans below read nullable columns into any (the driver's value as
// is) rather than sql.Null*: a page reads thousands of them.

func scanDevice(sc *sql.Rows) (Device, error) {
	var d Device
	var attrs, end, checked, released, updated any
	err := sc.Scan(&d.Serial, &d.AppleID, &d.Model, &d.ProductFamily, &d.Status, &attrs, &d.CoverageState,
		&end, &checked, &released, &updated)
	if a := text(attrs); a != "" {
		d.Attrs = json.RawMessage(a)
	}
	d.CoverageEnd, d.CoverageCheckedAt = anyNano(end), anyNano(checked)
	d.ReleasedAt, d.UpdatedAt = anyNano(released), anyNano(updated)
	return d, err
}

func scanCoverage(sc *sql.Rows) (Coverage, error) {
	var c Coverage
	var attrs, agreement, cancel, start, end any
	err := sc.Scan(&c.ID, &c.Serial, &c.Description, &c.Status, &c.PaymentType, &c.IsRenewable, &c.IsCanceled,
		&agreement, &cancel, &start, &end, &attrs)
	if a := text(attrs); a != "" {
		c.Attrs = json.RawMessage(a)
	}
	c.AgreementNumber, c.ContractCancelDate = text(agreement), text(cancel)
	c.StartDate, c.EndDate = text(start), text(end)
	return c, err
}

// text is a nullable TEXT column read into any: "" for NULL.
func text(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

// anyNano is a nullable Unix-nanosecond column read into any (fromNano).
func anyNano(v any) time.Time {
	n, ok := v.(int64)
	return fromNano(sql.NullInt64{Int64: n, Valid: ok})
}

// Counts returns how many devices and coverage records the tenant has,
// from the tenant's counters.
func (s *Store) Counts(ctx context.Context, tenantID string) (devices, coverage int, err error) {
	t, err := s.Tenant(ctx, tenantID)
	if err != nil {
		return 0, 0, fmt.Errorf("count devices: %w", err)
	}
	return t.Counts.Devices, t.Counts.Coverage, nil
}
