package store

import (
	"context"
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
// Each parameter is cast to its column's type: SQLite otherwise looks at the
// bound value when it plans a statement with ORDER BY or LIMIT on a STRICT
// table, which marks the statement to be prepared again (parsed and
// planned) every time a value is bound, prepared statement or not.
func (q DeviceQuery) where(tenantID string) (string, []any, error) {
	conds := []string{"d.tenant_id = CAST(? AS TEXT)", "d.serial > CAST(? AS TEXT)"}
	args := []any{tenantID, q.After}
	switch q.Coverage {
	case "":
	case CoverageActive, CoverageExpired, CoverageNone, CoverageUnknown:
		conds, args = append(conds, "d.coverage_state = CAST(? AS TEXT)"), append(args, q.Coverage)
	default:
		return "", nil, fmt.Errorf("%w: coverage %q: use active, expired, none or unknown", ErrBadQuery, q.Coverage)
	}
	if !q.EndBefore.IsZero() {
		conds, args = append(conds, "d.coverage_end < CAST(? AS INTEGER)"), append(args, q.EndBefore.UnixNano())
	}
	if q.SerialPrefix != "" {
		// A range on the key, so the prefix is a seek, not a scan.
		conds = append(conds, "d.serial >= CAST(? AS TEXT)", "d.serial < CAST(? AS TEXT)")
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
	WHERE tenant_id = CAST(?1 AS TEXT) AND serial >= CAST(?2 AS TEXT) AND serial <= CAST(?3 AS TEXT)
	ORDER BY serial, id`

// coverageListSQL reads the coverage of a filtered part, whose serials (a
// JSON array) may lie far apart: the same range, but only the records of
// the part's devices leave SQLite (the unary + keeps the list out of the
// index choice: a seek per device costs more than stepping over the
// records in between, which the device query stepped over already).
const coverageListSQL = `SELECT ` + coverageCols + ` FROM coverage
	WHERE tenant_id = CAST(?1 AS TEXT) AND serial >= CAST(?2 AS TEXT) AND serial <= CAST(?3 AS TEXT)
		AND +serial IN (SELECT value FROM json_each(?4))
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
// with ErrNotFound before any batch. The page is read on a direct
// connection (direct.go).
func (s *Store) StreamDevices(ctx context.Context, tenantID string, q DeviceQuery, emit func([]Device) error) (string, error) {
	limit := clampLimit(q.Limit)
	where, args, err := q.where(tenantID)
	if err != nil {
		return "", fmt.Errorf("list devices: %w", err)
	}
	var next string
	var emitErr error // emit's own error, returned as it is
	err = s.pages.read(ctx, func(c *directConn) error {
		if err := directTenantExists(ctx, c, tenantID); err != nil {
			return err
		}
		// The page is read in parts of pageChunk devices, each part's
		// coverage after it, so that the first batches go out while the
		// later parts are read.
		// The LIMIT is a constant (a bound one is looked at when the
		// statement is planned, see where); a shorter part stops early.
		query := fmt.Sprintf(`SELECT %s FROM devices d WHERE %s ORDER BY d.serial LIMIT %d`, deviceCols, where, pageChunk)
		for read := 0; read < limit; {
			n := min(limit-read, pageChunk)
			devs, err := readDevices(ctx, c, n, query, args...)
			if err != nil || len(devs) == 0 {
				return err
			}
			err = streamCoverage(ctx, c, tenantID, q.dense(), devs, func(batch []Device) error {
				emitErr = emit(batch)
				return emitErr
			})
			if err != nil {
				return err
			}
			if read += len(devs); len(devs) < n {
				return nil
			}
			args[1] = devs[len(devs)-1].Serial // the cursor: d.serial > ?
		}
		next = args[1].(string)
		return nil
	})
	switch {
	case err == nil:
		return next, nil
	case emitErr != nil && errors.Is(err, emitErr):
		return "", emitErr
	}
	return "", fmt.Errorf("list devices: %w", mapErr(err))
}

// pageChunk is how many devices StreamDevices reads at a time.
const pageChunk = 250

// pageReaders is how many direct connections read device pages at once; a
// page waits for a free one.
const pageReaders = 2

// directTenantExists returns ErrNotFound for an unknown tenant.
func directTenantExists(ctx context.Context, c *directConn, tenantID string) error {
	rows, err := c.query(ctx, `SELECT 1 FROM tenants WHERE id = ?`, tenantID)
	if err != nil {
		return err
	}
	defer rows.close()
	if rows.next() {
		return nil
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return unknownTenant(tenantID)
}

// readDevices reads the first n devices query selects (deviceCols).
func readDevices(ctx context.Context, c *directConn, n int, query string, args ...any) ([]Device, error) {
	rows, err := c.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.close()
	devs := make([]Device, 0, n)
	for len(devs) < n && rows.next() {
		devs = append(devs, Device{Serial: rows.text(0), AppleID: rows.text(1), Model: rows.text(2),
			ProductFamily: rows.text(3), Status: rows.text(4), Attrs: rows.bytes(5), CoverageState: rows.text(6),
			CoverageEnd: rows.nano(7), CoverageCheckedAt: rows.nano(8), ReleasedAt: rows.nano(9), UpdatedAt: rows.nano(10)})
	}
	return devs, rows.Err()
}

// readCoverage is the coverage record in the current row (coverageCols).
func readCoverage(rows *directRows) Coverage {
	return Coverage{ID: rows.text(0), Serial: rows.text(1), Description: rows.text(2), Status: rows.text(3),
		PaymentType: rows.text(4), IsRenewable: rows.int64(5) != 0, IsCanceled: rows.int64(6) != 0,
		AgreementNumber: rows.text(7), ContractCancelDate: rows.text(8), StartDate: rows.text(9), EndDate: rows.text(10),
		Attrs: rows.bytes(11)}
}

// streamCoverage reads the coverage records of devs (in serial order),
// gives each device its run of them (a slice of one array, capped so that
// an append copies instead of overwriting the next device's) and emits the
// devices in batches as they are complete.
func streamCoverage(ctx context.Context, c *directConn, tenantID string, dense bool, devs []Device, emit func([]Device) error) error {
	first, last := devs[0].Serial, devs[len(devs)-1].Serial
	var rows *directRows
	var err error
	if dense {
		rows, err = c.query(ctx, coverageRangeSQL, tenantID, first, last)
	} else {
		serials := make([]string, len(devs))
		for i, d := range devs {
			serials[i] = d.Serial
		}
		list, _ := json.Marshal(serials) // strings always encode
		rows, err = c.query(ctx, coverageListSQL, tenantID, first, last, string(list))
	}
	if err != nil {
		return fmt.Errorf("list coverage: %w", err)
	}
	defer rows.close()
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
	for rows.next() {
		rec := readCoverage(rows)
		for i < len(devs) && devs[i].Serial < rec.Serial {
			i++
		}
		if i == len(devs) || devs[i].Serial != rec.Serial {
			continue // a record of a device outside a filtered page
		}
		if len(covs) > start && covs[start].Serial != rec.Serial {
			start = len(covs) // the first record of device i
		}
		if len(covs) == cap(covs) {
			// A new array for the run of device i and those after it; the
			// runs already given out keep the old one.
			covs, start = append(make([]Coverage, 0, 2*cap(covs)+1), covs[start:]...), 0
		}
		covs = append(covs, rec)
		devs[i].Coverage = covs[start:len(covs):len(covs)]
		if err := complete(rec.Serial, false); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list coverage: %w", err)
	}
	return complete("", true)
}

// Devices returns up to limit devices of the tenant with serial > after, in
// serial order, each with its coverage records, and the cursor for the next
// page ("" on the last page). limit <= 0 means 100, at most 1000.
func (s *Store) Devices(ctx context.Context, tenantID, after string, limit int) ([]Device, string, error) {
	return s.ListDevices(ctx, tenantID, DeviceQuery{After: after, Limit: limit})
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
