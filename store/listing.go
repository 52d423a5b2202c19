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

// coverageRangeSQL reads the coverage of a dense page: one range of the
// primary key, from the page's first serial to its last.
const coverageRangeSQL = `SELECT ` + coverageCols + ` FROM coverage
	WHERE tenant_id = ?1 AND serial >= ?2 AND serial <= ?3 ORDER BY serial, id`

// coverageListSQL reads the coverage of a filtered page, whose serials (a
// JSON array) may lie far apart: the same range, but only the records of
// the page's devices leave SQLite (the unary + keeps the list out of the
// index choice: a seek per device costs more than stepping over the
// records in between, which the device query stepped over already).
const coverageListSQL = `SELECT ` + coverageCols + ` FROM coverage
	WHERE tenant_id = ?1 AND serial >= ?2 AND serial <= ?3 AND +serial IN (SELECT value FROM json_each(?4))
	ORDER BY serial, id`

const deviceCols = `d.serial, d.apple_id, d.model, d.product_family, d.status, d.attrs, d.coverage_state,
	d.coverage_end, d.coverage_checked_at, d.released_at, d.updated_at`

// ListDevices returns one page of the tenant's devices that match q, each
// with its coverage records, and the serial to pass as After for the next
// page ("" on the last page).
func (s *Store) ListDevices(ctx context.Context, tenantID string, q DeviceQuery) ([]Device, string, error) {
	limit := clampLimit(q.Limit)
	where, args, err := q.where(tenantID)
	if err != nil {
		return nil, "", fmt.Errorf("list devices: %w", err)
	}
	tx, end, err := s.readTx(ctx) // one snapshot for both queries
	if err != nil {
		return nil, "", fmt.Errorf("list devices: %w", mapErr(err))
	}
	defer end()
	if err := tenantExists(ctx, tx, tenantID); err != nil {
		return nil, "", fmt.Errorf("list devices: %w", err)
	}
	devs, err := listRows(ctx, tx, scanDevice, "devices", limit, `SELECT `+deviceCols+` FROM devices d WHERE `+where+
		` ORDER BY d.serial LIMIT ?`, append(args, limit)...)
	if err != nil || len(devs) == 0 {
		return devs, "", err
	}
	var covs []Coverage
	if q.dense() {
		covs, err = listRows(ctx, tx, scanCoverage, "coverage", len(devs), coverageRangeSQL,
			tenantID, devs[0].Serial, devs[len(devs)-1].Serial)
	} else {
		serials := make([]string, len(devs))
		for i, d := range devs {
			serials[i] = d.Serial
		}
		list, _ := json.Marshal(serials) // strings always encode
		covs, err = listRows(ctx, tx, scanCoverage, "coverage", len(devs), coverageListSQL,
			tenantID, devs[0].Serial, devs[len(devs)-1].Serial, string(list))
	}
	if err != nil {
		return nil, "", err
	}
	// Both lists are in serial order (SQLite's BINARY order is Go's): each
	// device takes its run of records, a slice of the one array, capped so
	// that an append copies instead of overwriting the next device's.
	j := 0
	for i := range devs {
		for j < len(covs) && covs[j].Serial < devs[i].Serial {
			j++
		}
		k := j
		for k < len(covs) && covs[k].Serial == devs[i].Serial {
			k++
		}
		if k > j {
			devs[i].Coverage = covs[j:k:k]
		}
		j = k
	}
	next := ""
	if len(devs) == limit {
		next = devs[len(devs)-1].Serial
	}
	return devs, next, nil
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
